"""A BM25 index (bm25s) over the passages of one or more JSONL corpora, built once and cached.

Each corpus line is a document ``{"id", "text", "title"?, "url"?}``. Documents are cut into
passages of ``passage_words`` words (overlapping by ``passage_words - passage_stride``); the
passages are indexed with bm25s (English stop words, Snowball stemming when PyStemmer is
installed). The index lives in ``cache_dir/<fingerprint>/``, where the fingerprint hashes the
corpora's bytes and the passage/tokenizer settings, so a corpus is indexed once and every later
run (or process: rollout workers, evaluation) loads it; a changed corpus gets a new index.

On disk, next to bm25s's sparse matrix: ``passages.jsonl`` (doc index, title, url, text) with a
``passages.offsets.npy`` of byte offsets, and ``docs.jsonl`` (one row per document: its id, url,
title, corpus file and byte offset) with ``docs.table.npy`` (id/url -> row, a look-up table of
data_synthesis/engine/lookup.py) - so passages and pages are read by seeking, and neither the
corpus texts nor a per-document dict are held in memory. ``term_max.npy`` holds each term's best
passage score, the bound that lets a search skip reading common terms' postings whole (MaxScore).
Searches read the postings with pread (data_synthesis/environment/postings.py), not through
bm25s's memory map, so a long-running search task's RSS does not grow with the pages it touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
from bm25s.tokenization import _infer_stopwords

from data_synthesis.engine.lookup import Tables, read_line, write_table
from data_synthesis.environment.postings import NpyArray, Postings

INDEX_VERSION = "bm25s-passages-v3"  # v2: docs.table.npy; v3: term_max.npy
# Indexes are shared by every run on a machine (the fingerprint keeps corpora apart).
DEFAULT_CACHE = os.environ.get(
    "MEGATRON_AGENTIC_INDEX_CACHE",
    os.path.join(os.path.expanduser("~"), ".cache", "megatron-agentic", "environment"),
)
_WORD = re.compile(r"\S+")
_TERM = re.compile(r"(?u)\b\w\w+\b")  # bm25s.tokenization.Tokenizer's default splitter


@dataclass(frozen=True)
class IndexConfig:
    """How corpora are cut into passages and where indexes are cached."""

    cache_dir: str = DEFAULT_CACHE
    passage_words: int = 120
    passage_stride: int = 100
    stem: bool = True
    chunk_docs: int = 20000  # documents tokenised per chunk while building


@dataclass
class Hit:
    """One search result: a passage and its document."""

    rank: int
    score: float
    doc_id: str
    title: str
    url: str
    text: str


def _stemmer(enabled: bool):
    if not enabled:
        return None
    try:
        import Stemmer
    except ImportError:
        return None
    return Stemmer.Stemmer("english")


def corpus_fingerprint(paths: list[Path], config: IndexConfig) -> str:
    """sha256 of the corpora's bytes and of everything that changes the index."""
    digest = hashlib.sha256(INDEX_VERSION.encode())
    stem = _stemmer(config.stem) is not None
    digest.update(f"{config.passage_words}:{config.passage_stride}:{stem}".encode())
    for path in paths:
        digest.update(str(path.stat().st_size).encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:24]


def split_passages(text: str, words: int, stride: int) -> list[str]:
    """Overlapping windows of `words` words; a short text is one passage."""
    tokens = _WORD.findall(text)
    if len(tokens) <= words:
        return [" ".join(tokens)] if tokens else []
    starts = range(0, max(len(tokens) - words, 0) + stride, stride)
    return [" ".join(tokens[s : s + words]) for s in starts if s < len(tokens)]


def _documents(paths: list[Path]):
    """(corpus index, byte offset, document) for every line; errors name file:line."""
    for corpus, path in enumerate(paths):
        offset = 0
        with path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: invalid JSON ({error.msg})") from None
                if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                    raise ValueError(f"{path}:{number}: a document needs a string 'text'")
                if "id" not in doc and "url" not in doc:
                    raise ValueError(f"{path}:{number}: a document needs an 'id' or a 'url'")
                yield corpus, start, doc


class CorpusIndex:
    """Search and page look-up over local corpora. `CorpusIndex.open(paths, config)` builds the
    index on first use and loads it afterwards."""

    def __init__(self, directory: Path, paths: list[Path], config: IndexConfig):
        self.directory, self.paths, self.config = directory, paths, config
        self.retriever = bm25s.BM25.load(directory / "bm25", mmap=True, show_progress=False)
        self.stats = json.loads((directory / "stats.json").read_text())
        self.postings = Postings(directory / "bm25", int(self.stats["passages"]))
        self.offsets = NpyArray(directory / "passages.offsets.npy")
        self.term_max = np.load(directory / "term_max.npy")
        self._passages = (directory / "passages.jsonl").open("rb")
        self._tables = Tables()
        self._stopwords = set(_infer_stopwords("en"))
        stemmer = _stemmer(config.stem)
        self._stem = stemmer.stemWord if stemmer is not None else (lambda word: word)

    @classmethod
    def open(cls, paths, config: IndexConfig | None = None, log=print) -> CorpusIndex:
        config = config or IndexConfig()
        paths = [Path(p).resolve() for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"corpus file(s) not found: {missing}")
        directory = Path(config.cache_dir) / corpus_fingerprint(paths, config)
        if not (directory / "stats.json").exists():
            build_index(paths, directory, config, log)
        return cls(directory, paths, config)

    # --- search -------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top-k passages for one query (fewer when fewer passages match any term)."""
        known = [w for w in self._analyse(query) if w in self.retriever.vocab_dict]
        if not known:
            return []
        k = min(k, int(self.stats["passages"]))
        hits = []
        for passage_id, score in self._top_k(known, k):
            if score <= 0:
                continue
            row = self.passage(int(passage_id))
            hits.append(
                Hit(len(hits) + 1, float(score), row["id"], row["title"], row["url"], row["text"])
            )
        return hits

    def _top_k(self, terms: list[str], k: int) -> list[tuple[int, float]]:
        """(passage, score) of the k best passages, best first (ties: lower passage first):
        exact top-k by MaxScore over bm25s's precomputed per-term scores (Postings.top_k), so a
        query costs its rare terms' postings and a few blocks of the common ones, where bm25s's
        retrieve scores every passage and summing every posting grows with the corpus."""
        retriever = self.retriever
        if retriever.nonoccurrence_array is not None:  # BM25L/BM25+: every passage scores
            ids, scores = retriever.retrieve([terms], k=k, show_progress=False, n_threads=0)
            return list(zip(ids[0].tolist(), scores[0].tolist()))
        ids = retriever.get_tokens_ids(terms)
        passages, scores = self.postings.top_k(ids, [float(self.term_max[t]) for t in ids], k)
        return list(zip(passages.tolist(), scores.tolist()))

    def _analyse(self, text: str) -> list[str]:
        """The query's terms, analysed as bm25s's Tokenizer analysed the passages."""
        words = _TERM.findall(text.lower())
        return [self._stem(w) for w in words if w not in self._stopwords]

    def passage(self, passage_id: int) -> dict:
        self._passages.seek(int(self.offsets.read(passage_id, passage_id + 1)[0]))
        return json.loads(self._passages.readline())

    # --- pages --------------------------------------------------------------------------------

    def page(self, key: str) -> dict | None:
        """The document whose url or id is `key` (None when the corpus has no such page)."""
        key = key.strip()
        for offset in self._tables.get(self.directory / "docs.table.npy", key):
            row = read_line(self.directory / "docs.jsonl", offset)
            if key in (row["id"], row["url"]):  # the first document with this id or url
                return read_line(self.paths[row["corpus"]], row["offset"])
        return None


def term_max_scores(matrix: dict) -> np.ndarray:
    """Each term's best per-passage score (0 for a term without postings): MaxScore's bounds."""
    indptr, data = np.asarray(matrix["indptr"]), np.asarray(matrix["data"])
    best = np.zeros(len(indptr) - 1, dtype=np.float64)
    nonempty = np.flatnonzero(np.diff(indptr) > 0)
    if len(nonempty):
        best[nonempty] = np.maximum.reduceat(data, indptr[nonempty])
    return best


def build_index(paths: list[Path], directory: Path, config: IndexConfig, log=print) -> dict:
    """Cut the corpora into passages, tokenise in chunks (one growing vocabulary), index with
    bm25s and save everything under `directory` (written to a temp dir, then renamed)."""
    started = time.perf_counter()
    tmp = directory.with_name(directory.name + f".tmp{time.time_ns()}")
    tmp.mkdir(parents=True)
    tokenizer = bm25s.tokenization.Tokenizer(stopwords="en", stemmer=_stemmer(config.stem))
    ids: list[list[int]] = []
    offsets: list[int] = []
    chunk: list[str] = []
    documents = text_bytes = 0
    pages: list[tuple[str, int]] = []  # (id or url, row offset in docs.jsonl)
    with (tmp / "passages.jsonl").open("wb") as passages, (tmp / "docs.jsonl").open("wb") as docs:
        for corpus, offset, doc in _documents(paths):
            doc_id = str(doc.get("id") or doc.get("url"))
            url = str(doc.get("url") or doc_id)
            title = str(doc.get("title") or doc_id)
            row = {"id": doc_id, "url": url, "title": title, "corpus": corpus, "offset": offset}
            pages += [(key, docs.tell()) for key in dict.fromkeys(filter(None, (doc_id, url)))]
            docs.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
            documents += 1
            text_bytes += len(doc["text"].encode())
            for text in split_passages(doc["text"], config.passage_words, config.passage_stride):
                offsets.append(passages.tell())
                line = {"id": doc_id, "title": title, "url": url, "text": text}
                passages.write((json.dumps(line, ensure_ascii=False) + "\n").encode())
                chunk.append(f"{title}. {text}")
            if len(chunk) >= config.chunk_docs:
                ids.extend(tokenizer.tokenize(chunk, return_as="ids", show_progress=False))
                chunk = []
        if chunk:
            ids.extend(tokenizer.tokenize(chunk, return_as="ids", show_progress=False))
    if not ids:
        raise ValueError(f"corpora {[str(p) for p in paths]}: no passages to index")
    retriever = bm25s.BM25()
    vocab = tokenizer.get_vocab_dict()
    retriever.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
    del ids
    retriever.save(tmp / "bm25", show_progress=False)
    np.save(tmp / "passages.offsets.npy", np.asarray(offsets, dtype=np.int64))
    np.save(tmp / "term_max.npy", term_max_scores(retriever.scores))
    write_table(tmp / "docs.table.npy", pages)
    stats = {
        "corpora": [str(p) for p in paths],
        "documents": documents,
        "passages": len(offsets),
        "text_bytes": text_bytes,
        "vocabulary": len(vocab),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    stats["index_bytes"] = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1))
    try:
        tmp.rename(directory)
    except OSError:  # another process built it meanwhile: keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    log(
        f"indexed {documents} documents ({text_bytes / 1e6:.1f} MB) as {len(offsets)} passages "
        f"in {stats['build_seconds']} s -> {directory} ({stats['index_bytes'] / 1e6:.1f} MB)"
    )
    return stats
