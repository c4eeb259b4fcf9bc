"""A BM25 index (bm25s) over the passages of one or more JSONL corpora, built once and cached.

Each corpus line is a document ``{"id", "text", "title"?, "url"?}``. Documents are cut into
passages of ``passage_words`` words (overlapping by ``passage_words - passage_stride``); the
passages are indexed with bm25s (English stop words, Snowball stemming when PyStemmer is
installed). The index lives in ``cache_dir/<fingerprint>/``, where the fingerprint hashes the
corpora's bytes and the passage/tokenizer settings, so a corpus is indexed once and every later
run (or process: rollout workers, evaluation) loads it; a changed corpus gets a new index. The
build (data_synthesis/environment/build.py) streams the corpora in shards, so its memory does
not grow with them, and runs in one process or as datatrove tasks (environment/jobs.py).

An index is one or more shards (``s00000/`` ...: contiguous runs of the corpora's documents,
scored with the whole corpus's statistics); a search takes each shard's exact top k and merges
them, so the results do not depend on the shard count. In a shard, next to bm25s's sparse
matrix (``index/bm25``): ``passages.jsonl`` (doc id, title, url, text) with a
``passages.offsets.npy`` of byte offsets, and ``docs.jsonl`` (one row per document: its id, url,
title, corpus file and byte offset - or, for a compressed corpus file, where its page is in the
shard's ``pages.zst``) with ``index/docs.table.npy`` (id/url -> row, a look-up
table of data_synthesis/engine/lookup.py; the index's ``pages.table.npy`` says which shard
holds an id or url) - so passages and pages are read by seeking, and
neither the corpus texts nor a per-document dict are held in memory; a query's terms are found
the same way in the index's ``terms.table.npy`` (term hash -> each shard's id of the term: one
look-up per term however many shards a search covers), so no task holds the vocabulary
either. ``index/term_max.npy`` holds each term's best passage score, the bound that lets a
search skip reading common terms' postings whole (MaxScore). Searches read the postings with
pread (data_synthesis/environment/postings.py), not through bm25s's memory map, so a
long-running search task's RSS does not grow with the pages it touched.
"""

from __future__ import annotations

import bisect
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_synthesis.engine.io import NpyArray, allow_open_files, stable_hash
from data_synthesis.engine.lookup import BLOCK, SizedCache, Tables
from data_synthesis.environment.build import (  # noqa: F401 - IndexConfig, DEFAULT_CACHE, SHARD_MB: re-exported
    DEFAULT_CACHE,
    INDEX_VERSION,
    PAGE_STORE,
    SHARD_BITS,
    SHARD_MB,
    SHARD_TABLE,
    TERM_TABLE,
    Analyser,
    IndexConfig,
    build_index,
    corpus_fingerprint,
    read_page,
)
from data_synthesis.environment.postings import Postings

TERMS_CACHED = 1 << 15  # (shard, id) pairs of the terms looked up last (about 3 MB)
WIDE_TERM = BLOCK  # a term in more shards is read per shard wanted (one block's read: 4 KiB)
ID_MASK = (1 << SHARD_BITS) - 1
RESULTS_CACHED = 1 << 12  # queries' results kept, the most recent (about 4 MB with their terms)
DOCS_CACHED = 1 << 14  # documents located (id or url -> shard and row), the most recent
PASSAGES_CACHED = 1 << 11  # passages read last (about 3 MB): a question's searches share hits
SHARDS_OPEN = 256  # shards a task keeps open (six files each), the most recently used


@dataclass
class Hit:
    """One search result: a passage and its document."""

    rank: int
    score: float
    doc_id: str
    title: str
    url: str
    text: str


class Shard:
    """One shard of an index (data_synthesis/environment/build.py): its postings, passages,
    pages and term bounds; passage ids here are the shard's own."""

    def __init__(self, directory: Path, first: int, passages: int):
        self.directory, self.first, self.passages = directory, first, passages
        index = directory / "index"
        self.postings = Postings(index / "bm25", passages, index / "term_max.npy")
        self.offsets = NpyArray(directory / "passages.offsets.npy")
        self._passages = (directory / "passages.jsonl").open("rb")

    def top_k(self, terms: list[int], k: int, floor=None) -> tuple[np.ndarray, np.ndarray]:
        """The shard's k best passages for some of its term ids, and their scores (Postings.
        top_k: exact MaxScore over bm25s's precomputed per-term scores, so a query costs its
        rare terms' postings and a few blocks of the common ones, where bm25s's retrieve scores
        every passage); none scoring at most `floor` (earlier shards' k-th best)."""
        return self.postings.top_k(terms, k, floor)

    def passage(self, passage_id: int) -> dict:
        self._passages.seek(int(self.offsets.read(passage_id, passage_id + 1)[0]))
        return json.loads(self._passages.readline())


class OpenShards(Sequence):
    """An index's non-empty shards in corpus order, each opened on first use and the
    SHARDS_OPEN most recently used kept open: a task of an index of thousands of small shards
    (`search_shards`) does not hold six files per shard. A shard dropped here closes its files
    once nothing else holds it, and is opened again (its caches empty) when next used."""

    def __init__(self, places: list[tuple[Path, int, int]]):
        self._places = places  # (directory, first passage id, passages) per shard
        self._open = SizedCache(SHARDS_OPEN, lambda shard: 1)

    def __len__(self) -> int:
        return len(self._places)

    def __getitem__(self, rank: int) -> Shard:
        rank = range(len(self._places))[rank]  # IndexError past the end, as a list
        return self._open.get(rank, lambda: Shard(*self._places[rank]))

    def opened(self) -> int:
        """How many shards are open now."""
        return len(self._open)


class CorpusIndex:
    """Search and page look-up over local corpora. `CorpusIndex.open(paths, config)` builds the
    index on first use and loads it afterwards."""

    def __init__(self, directory: Path, paths: list[Path], config: IndexConfig):
        self.directory, self.paths, self.config = directory, paths, config
        self.stats = json.loads((directory / "stats.json").read_text())
        if self.stats.get("version") != INDEX_VERSION:  # e.g. a run planned before an upgrade
            raise ValueError(
                f"{directory}: a search index of version {self.stats.get('version')}, this code"
                f" reads {INDEX_VERSION}: start the run again (it names the index anew and"
                " builds it once), or delete this directory"
            )
        places, first = [], 0
        self._ranks = {}  # the build's shard rank -> its place in self.shards (empty ones left out)
        for rank, shard in enumerate(self.stats["shards"]):
            if shard["passages"]:
                self._ranks[rank] = len(places)
                places.append((directory / shard["name"], first, shard["passages"]))
            first += shard["passages"]
        self._numbers = list(self._ranks)  # and back: a place's build rank
        self.shards = OpenShards(places)
        self._firsts = [first for _, first, _ in places]
        allow_open_files(8 * min(len(places), SHARDS_OPEN))
        self._tables = Tables()
        # queries repeat words: a term's places, a wide term's rows, or one shard's id of it
        self._terms = SizedCache(
            TERMS_CACHED, lambda held: len(held) + 1 if isinstance(held, dict) else 1
        )
        self._results = SizedCache(RESULTS_CACHED, lambda found: 1)  # and whole queries
        self._located = SizedCache(DOCS_CACHED, lambda found: 1)  # a question's documents
        self._passages = SizedCache(PASSAGES_CACHED, lambda row: 1)
        self._analyser = Analyser(config.stem)

    @classmethod
    def open(
        cls, paths, config: IndexConfig | None = None, log=print, directory: str | None = None
    ) -> CorpusIndex:
        """The index of `paths`, built here when it is not built yet. `directory`: where it
        was named when the run was planned (engine/runner.py), so a task does not name it
        again: naming stats every corpus file and reads its kept identity, 100,000 of each per
        task for 1 TB in 10 MB files."""
        config = config or IndexConfig()
        paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if directory is None:
            paths = [p.resolve() for p in paths]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"corpus file(s) not found: {missing}")
            directory = Path(config.cache_dir) / corpus_fingerprint(paths, config)
        directory = Path(directory)
        if not (directory / "stats.json").exists():
            try:
                build_index(paths, directory, config, log)
            except (OSError, RuntimeError):
                if not (directory / "stats.json").exists():
                    raise  # not another process finishing the same build under this one
        return cls(directory, paths, config)

    # --- search -------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, shards: tuple[int, ...] | None = None) -> list[Hit]:
        """The top-k passages for one query (fewer when fewer passages match any term), over
        every shard or only `shards` (ranks in `self.shards`, ascending: see `scope`). A task's
        queries repeat (an entity's questions in several styles, the same check of several
        plans: 28% of the bundled pipeline's 3,996 searches), so the last RESULTS_CACHED
        queries' passage ids and scores are kept, keyed by their analysed terms."""
        return list(self.ranked(query, k, shards))

    def ranked(self, query: str, k: int = 10, shards: tuple[int, ...] | None = None):
        """search()'s hits one at a time, best first, each passage read when it is reached: a
        caller that passes over some (the environment's held-out documents) and stops once it
        has enough reads no more passages than it needs."""
        terms = self._analyse(query)
        if not terms:
            return
        k = min(k, int(self.stats["passages"]))
        passages, scores = self._results.get(
            (tuple(terms), k, shards), lambda: self._top_k(terms, k, shards)
        )
        rank = 0
        for passage_id, score in zip(passages.tolist(), scores.tolist()):
            if score <= 0:
                continue
            row, rank = self.passage(passage_id), rank + 1
            yield Hit(rank, float(score), row["id"], row["title"], row["url"], row["text"])

    def term_ids(
        self, terms: list[str], shards: tuple[int, ...] | None = None
    ) -> dict[int, list[int]]:
        """Each shard's ids of the analysed terms it holds, by the shard's rank in
        `self.shards` (every shard, or only `shards`; shards holding none left out). A term is
        looked up once, in the index's `terms.table.npy`, by a 64-bit hash of it, however many
        shards the index has (a look-up in each shard's own table cost a third of a search over
        63 shards), and no task holds the vocabulary (bm25s's vocab dict grows with the corpus:
        88,056 terms, 17 MB, at 1 GB). A word the corpus lacks is taken for a term only if
        their hashes collide (about 1 in 10^13 per word at a 10M-term vocabulary)."""
        wanted = None if shards is None else sorted(set(shards))
        ids: dict[int, list[int]] = {}
        for term in terms:
            for rank, term_id in self._term_places(term, wanted):
                ids.setdefault(rank, []).append(term_id)
        return ids

    def _term_places(self, term: str, wanted: list[int] | None) -> Iterable[tuple[int, int]]:
        """(shard rank, id) of `term` in the `wanted` shards (None: all). A term held by at most
        WIDE_TERM shards is read whole and kept; a wider one (a common word, in an index of
        thousands of shards) only where wanted, each shard's id found by binary search in the
        term's rows and kept, so a scoped search costs the same whatever the shard count."""
        held = self._terms.get(term, lambda: self._places(term))
        if isinstance(held, dict):
            return held.items() if wanted is None else ((r, held[r]) for r in wanted if r in held)
        if wanted is None:
            return self._as_places(self._tables.values(self.directory / TERM_TABLE, *held)).items()
        found = ((r, self._terms.get((term, r), lambda r=r: self._place(held, r))) for r in wanted)
        return ((rank, term_id) for rank, term_id in found if term_id is not None)

    def _places(self, term: str) -> dict[int, int] | tuple[int, int]:
        """The shards holding `term` -> each one's id of it; for a term of more than WIDE_TERM
        shards, its rows (lo, hi) of the terms table instead."""
        lo, hi = self._tables.span(self.directory / TERM_TABLE, term)
        if hi - lo > WIDE_TERM:
            return lo, hi
        return self._as_places(self._tables.values(self.directory / TERM_TABLE, lo, hi))

    def _as_places(self, values: list[int]) -> dict[int, int]:
        """terms.table.npy values (shard << SHARD_BITS | id, ascending) as shard rank -> id;
        where two of a shard's terms share the hash, its lowest id."""
        places: dict[int, int] = {}
        for value in values:
            rank = self._ranks.get(value >> SHARD_BITS)  # None: an empty shard's ""
            if rank is not None:
                places.setdefault(rank, value & ID_MASK)
        return places

    def _place(self, rows: tuple[int, int], rank: int) -> int | None:
        """Shard `rank`'s id of the term whose table rows are `rows` (None: not in it)."""
        number = self._numbers[rank]
        low, high = number << SHARD_BITS, (number + 1) << SHARD_BITS
        values = self._tables.between(self.directory / TERM_TABLE, *rows, low, high)
        return values[0] & ID_MASK if values else None

    def _top_k(
        self, terms: list[str], k: int, shards: tuple[int, ...] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best passages (int64) and their scores for some analysed terms, best first (ties:
        lower passage first): each shard's exact top k, merged. Scores use the whole corpus's
        statistics in every shard, so this is the top k of one index of everything (of the
        passages of `shards`, when given). Shards are searched in corpus order, each pruning
        what cannot beat the k-th best found so far."""
        passages, scores = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        held = self.term_ids(terms, shards)
        for rank in sorted(held):
            shard, ids = self.shards[rank], held[rank]
            floor = scores[k - 1] if len(scores) >= k else None
            found, score = shard.top_k(ids, k, floor)
            passages = np.concatenate([passages, found.astype(np.int64) + shard.first])
            scores = np.concatenate([scores, score])
            best = np.lexsort((passages, -scores))[:k]
            passages, scores = passages[best], scores[best]
        return passages, scores

    def _analyse(self, text: str) -> list[str]:
        """The query's terms, analysed as the build analysed the passages."""
        return self._analyser.terms(text)

    def passage(self, passage_id: int) -> dict:
        """A passage by its id over the whole index (shards numbered in corpus order). The last
        PASSAGES_CACHED read are kept: an entity's questions and plans search alike and find
        the same passages (84% of a 10 MB planning task's 519,910 passage reads were among
        the last 1,024 distinct ones, 90% among the last 4,096)."""
        return self._passages.get(passage_id, lambda: self._read_passage(passage_id))

    def _read_passage(self, passage_id: int) -> dict:
        shard = self.shards[bisect.bisect_right(self._firsts, passage_id) - 1]
        return shard.passage(passage_id - shard.first)

    # --- pages --------------------------------------------------------------------------------

    def page(self, key: str) -> dict | None:
        """The document whose url or id is `key` (None when the corpus has no such page)."""
        found = self._locate(key.strip())
        if found is None:
            return None
        rank, row = found
        if "page" in row:  # from a compressed corpus: kept in the shard's page store
            store = self.shards[rank].directory / PAGE_STORE
            return read_page(
                lambda offset, size: self._tables.read(store, offset, size), row["page"]
            )
        return self._tables.line(self.paths[row["corpus"]], row["offset"])

    def _locate(self, key: str) -> tuple[int, dict] | None:
        """The shard rank and docs.jsonl row of the first document (in corpus order) whose id
        or url is `key`: the index's `pages.table.npy` names the shards that may hold it (one
        unless ids repeat across shards, or two keys' hashes collide), then one look-up in each
        of those shards' `docs.table.npy`. Kept for the most recent documents: an entity's
        questions share their sources, and the pages an agent visits are the ones its searches
        found."""
        return self._located.get(key, lambda: self._find(key))

    def _find(self, key: str) -> tuple[int, dict] | None:
        named = set(self._tables.get(self.directory / SHARD_TABLE, key)) & self._ranks.keys()
        for rank in sorted(named):
            shard = self.shards[self._ranks[rank]]
            table = shard.directory / "index" / "docs.table.npy"
            for offset in sorted(self._tables.get(table, key)):
                row = self._tables.line(shard.directory / "docs.jsonl", offset)
                if key in (row["id"], row["url"]):
                    return self._ranks[rank], row
        return None

    # --- scopes -------------------------------------------------------------------------------

    def scope(self, key: str, docs: list[str], count: int) -> tuple[int, ...] | None:
        """The shards one question's searches cover when they are limited to `count` shards
        (`environment.search_shards`): the shards holding its source documents `docs`, then
        shards drawn at random, seeded by the question's `key`, up to `count` (more when its
        documents span more). None - every shard - when `count` is 0 or covers them all.

        A search then costs what it costs on `count` shards of text, whatever the corpus's
        size, and the question's evidence stays findable; what changes is that the agent sees
        the rest of the corpus only through the drawn shards (docs/data_synthesis.md)."""
        if not count or count >= len(self.shards):
            return None
        own = {found[0] for found in map(self._locate, docs) if found is not None}
        others = sorted(set(range(len(self.shards))) - own)
        drawn = random.Random(stable_hash(key)).sample(others, max(0, count - len(own)))
        return tuple(sorted(own | set(drawn)))
