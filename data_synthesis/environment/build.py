"""Building the search index (data_synthesis/environment/index.py) in shards, each in memory
that does not grow with the corpus, as tasks of a datatrove job or in one process.

bm25s's own `BM25.index` takes every passage's token ids at once, as Python lists: 4.0 GB peak
RSS for 1 GB of text. Here the corpora are cut into shards (byte ranges of their lines,
engine/io.task_ranges) and each shard becomes an index of its own passages, in bm25s's file
format and scored with bm25s's functions, but with the statistics of the whole corpus, so the
scores (and a search over every shard) are those of one index of everything:

1. read (a task per shard): the shard's lines are streamed once; each document gets a row in
   `docs.jsonl` (a compressed or parquet corpus file's document also its page, in zstd blocks in
   `pages.zst`: a page is otherwise read from the corpus at its offset), each passage a line
   in `passages.jsonl` and its byte offset in `passages.offsets.npy`; passages are tokenised a
   chunk at a time (one growing vocabulary, numbered as bm25s's tokenizer numbers it but held
   as hashes: _Vocabulary), and each chunk's postings (term, passage) -> (term frequency,
   passage length) become a sorted run on disk (data_synthesis/engine/sort.py), as do the
   pages' (hash of id or url -> docs.jsonl row). The shard's terms (`terms.txt`,
   `term_hashes.npy`), document frequencies and token count are saved.
2. count (one task): every shard's document frequencies summed by term (hash), in a sorted
   merge: `df.table.npy` (term hash -> documents holding it in the whole corpus), and the
   totals (passages, tokens); the shards' terms merged the same way into `terms.table.npy`
   (term hash -> each shard's id of it), so a search finds a term in every shard with one
   look-up; the shards' page runs into `pages.table.npy` (hash of id or url -> shard), so a
   page is found in its shard at once.
3. write (a task per shard): the shard's runs are merged in (term, passage) order and each
   posting is scored as bm25s scores it (idf from the corpus-wide frequencies, the corpus's
   average passage length); bm25s's CSC arrays are written a block at a time with each term's
   best score (`term_max.npy`, MaxScore's bounds) and the page runs become `docs.table.npy`.
   bm25s writes its own vocab and params files, so `bm25s.BM25.load` reads a shard (searches
   use `terms.table.npy` instead of bm25s's vocab dict).
4. finish (one task): `stats.json` (and `terms.table.npy`, `pages.table.npy` moved beside it),
   then the build directory is renamed into place.

A build lives in `<fingerprint>.build/` until it finishes: every step writes to a temporary
name and renames it when done, so a killed task is rerun from its start and finished shards are
kept (a rerun resumes; the finish step, which deletes files, first saves what it needs of
them), and two processes building the same index waste work but never mix files. Shards are
contiguous in corpus order and passage ids are numbered across them, so the index is the same
whatever the shard count: one shard's arrays equal what `BM25.index` gives
(tests/unit/test_index_build.py), and a search over several shards returns exactly one shard's
results. Passage ids are int32 within a shard (bm25s), so shards of under 2^31 passages lift
that cap from the corpus. Memory of a task: its shard's vocabulary (about 12 bytes a term; the
write step loads one array of its size at a time), a cache of the words in use, one chunk of
passages and the merge buffers (`merge_memory`), with glibc's mmap threshold fixed so freed
arrays go back to the system (large_arrays_mapped).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path

import bm25s
import numpy as np
import zstandard
from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer
from bm25s.tokenization import _infer_stopwords
from bm25s.utils import json_functions
from tqdm import tqdm

from data_synthesis.engine.io import (
    ByteRange,
    InputFile,
    NpyArray,
    NpyWriter,
    edges_sha256,
    format_of,
    parse_document,
    read_lines,
    stable_hash,
    task_ranges,
    text_size,
    write_json,
)
from data_synthesis.engine.lookup import in_table_order
from data_synthesis.engine.sort import KEY, SortedRuns
from megatron_agentic.data.checks import npy_header

# v2: docs.table.npy; v3: term_max.npy; v4: every chunk's words; v5: vocab.table.npy; v6: shards
# v7: pages.table.npy (page -> shards)
INDEX_VERSION = "bm25s-passages-v9"  # v9: terms.table.npy sorted by (term, shard)
SHARD_TABLE = "pages.table.npy"
TERM_TABLE = "terms.table.npy"
SHARD_BITS = 32  # a terms.table.npy value: shard rank << SHARD_BITS | the shard's term id
PAGE_STORE = "pages.zst"  # a shard's pages from compressed or parquet corpora (_PageStore)
# Indexes are shared by every run on a machine (the fingerprint keeps corpora apart).
DEFAULT_CACHE = os.environ.get(
    "MEGATRON_AGENTIC_INDEX_CACHE",
    os.path.join(os.path.expanduser("~"), ".cache", "megatron-agentic", "environment"),
)
# MiB of corpus text per index shard by default (the cluster config: 8,192). An index is cached
# per layout, so the environment and eval CLIs (--shard-mb) name a run's size to share its index
SHARD_MB = 16
_WORD = re.compile(r"\S+")
_TERM = re.compile(r"(?u)\b\w\w+\b")  # bm25s.tokenization.Tokenizer's default splitter
_LOW32 = np.uint64(0xFFFFFFFF)
POSTINGS = {"tf": "uint32", "length": "uint32"}
PAGES = {"row": "uint64"}


@dataclass(frozen=True)
class IndexConfig:
    """How corpora are cut into passages and shards, where indexes are cached, and the build's
    memory. The shard count changes the files, not the search results."""

    cache_dir: str = DEFAULT_CACHE
    passage_words: int = 120
    passage_stride: int = 100
    stem: bool = True
    chunk_passages: int = 8192  # passages tokenised per sorted run of postings
    merge_memory: int = 8 << 20  # bytes a merge of the runs works in
    shards: int = 0  # 0: one per `shard_bytes` of corpus
    shard_bytes: int = SHARD_MB << 20

    def shard_count(self, files: list[InputFile]) -> int:
        """The shards of corpora (`corpus_files`): one per `shard_bytes` of their text, so a
        compressed corpus's shards hold as much text as a plain one's."""
        if self.shards < 0 or self.shard_bytes <= 0:
            raise ValueError(f"index shards must be >= 0 and shard_bytes > 0, got {self}")
        total = sum(file.text for file in files)
        return self.shards or max(1, math.ceil(total / self.shard_bytes))


def stemmer(enabled: bool):
    """PyStemmer's English stemmer (None when disabled or not installed)."""
    if not enabled:
        return None
    try:
        import Stemmer
    except ImportError:
        return None
    return Stemmer.Stemmer("english")


def corpus_fingerprint(paths: list[Path], config: IndexConfig) -> str:
    """A hash of the corpora and of everything that changes the index, the shard count
    included: it does not change a search over every shard, but a search limited to some
    shards (`environment.search_shards`) covers shards of this layout. A corpus file counts by
    its identity (`CorpusFile`), in order."""
    return _fingerprint(corpus_files(paths, config), config)


def _fingerprint(files: list[CorpusFile], config: IndexConfig) -> str:
    digest = hashlib.sha256(INDEX_VERSION.encode())
    stem = stemmer(config.stem) is not None
    shards = config.shard_count([file.described for file in files])
    digest.update(f"{config.passage_words}:{config.passage_stride}:{stem}:{shards}".encode())
    for file in files:
        digest.update(file.identity.encode())
    return digest.hexdigest()[:24]


@dataclass(frozen=True)
class CorpusFile:
    """A corpus file's identity - its size, modification time and SHA-256 of its first and last
    64 KiB (what a run's fingerprint reads of its inputs, engine/fingerprint.py), not its path:
    a copy that keeps the time (rsync -a, cp -p) shares the index, an edit gets a new one - and
    its description (size, format, text: engine/io.InputFile), by which the build cuts shards.
    Not every byte: the SLURM path names the index when it submits the build, so hashing 1 TB
    (~10 minutes at the 1.7 GB/s measured here, from cache) held up the submission of every job
    until 2026-12-04. Kept under the cache by path, size, inode and modification time, so naming
    an index again reads one small file per corpus file; a corpus file the run describes as
    an input (engine/io.describe: its size, time and edges) reads nothing more."""

    identity: str
    described: InputFile

    @classmethod
    def of(cls, path: Path, cache: Path, known: InputFile | None = None) -> CorpusFile:
        if known is not None and known.edges:
            return cls(f"{known.size}:{known.mtime_ns}:{known.edges}", known)
        status = path.stat()
        key = f"{os.path.abspath(path)}|{status.st_size}|{status.st_ino}|{status.st_mtime_ns}"
        memo = cache / "identities" / hashlib.sha256(key.encode()).hexdigest()[:32]
        try:
            kept = json.loads(memo.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            kept = None  # none yet, or an identity alone (kept before 2026-12-05)
        if not isinstance(kept, dict):
            size = status.st_size
            codec = format_of(path) if size else None
            kept = {
                "identity": f"{size}:{status.st_mtime_ns}:{edges_sha256(path, size)}",
                "text": text_size(path, size, codec),
                "codec": codec,
            }
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_name(f"{memo.name}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(kept))
            tmp.replace(memo)
        return cls(
            kept["identity"], InputFile(str(path), status.st_size, kept["text"], kept["codec"])
        )


def corpus_files(
    paths: list[Path], config: IndexConfig, known: dict[str, InputFile] | None = None
) -> list[CorpusFile]:
    """Each corpus file's CorpusFile; `known`: files the run described already, by path."""
    known = known or {}
    cache = Path(config.cache_dir)
    try:
        return [CorpusFile.of(Path(path), cache, known.get(str(path))) for path in paths]
    except FileNotFoundError as error:
        raise FileNotFoundError(f"corpus file not found: {error.filename}") from None


def split_passages(text: str, words: int, stride: int) -> list[str]:
    """Overlapping windows of `words` words; a short text is one passage."""
    tokens = _WORD.findall(text)
    if len(tokens) <= words:
        return [" ".join(tokens)] if tokens else []
    starts = range(0, max(len(tokens) - words, 0) + stride, stride)
    return [" ".join(tokens[s : s + words]) for s in starts if s < len(tokens)]


def _documents(paths: list[Path], ranges: list[ByteRange]):
    """(corpus index, byte offset, on-disk bytes read, document, line) for every line starting
    in `ranges` (the line only from a compressed corpus, whose page is kept in the index);
    errors name file:line."""
    # a corpus's number by its path (a list's index() per range: 10^10 steps at 100,000 files)
    numbers = {str(path): number for number, path in reversed(list(enumerate(paths)))}
    for byte_range in ranges:
        corpus = numbers[byte_range.path]
        lines = read_lines(byte_range)
        for start, line in lines:
            doc = parse_document(byte_range.path, start, line)  # the synthesis input's rules
            if doc is not None:
                yield corpus, start, lines.advanced(), doc, line if byte_range.codec else None


@dataclass
class _Counts:
    """What a shard's read counted (saved as its read.json)."""

    documents: int = 0
    text_bytes: int = 0
    passages: int = 0
    tokens: int = 0


class Analyser:
    """bm25s's Tokenizer analysis (lower case, words of two or more \\w, English stop words out,
    PyStemmer stems), written once for the build and the queries."""

    def __init__(self, stem: bool):
        self.stopwords = frozenset(_infer_stopwords("en"))
        self.stemmer = stemmer(stem)

    def words(self, text: str) -> list[str]:
        return _TERM.findall(text.lower())

    def stems(self, words: list[str]) -> list[str]:
        return self.stemmer.stemWords(words) if self.stemmer is not None else list(words)

    def terms(self, text: str) -> list[str]:
        return self.stems([w for w in self.words(text) if w not in self.stopwords])


class _WordIds:
    """word -> term id (-1: a stop word), in two generations: `young` is looked up in C, the
    words it misses in `old` (and moved back to `young`); `age()` makes a full young generation
    the old one, so the words in use stay cached while the cache stays bounded."""

    def __init__(self, limit: int):
        self.limit, self.young, self.old = limit, {}, {}

    def ids(self, words: list[str], learn) -> np.ndarray:
        """The words' ids; `learn(new)` adds the words known to neither generation (in order of
        first use) to `young`."""
        ids = self._young_ids(words)
        missed = np.flatnonzero(ids == -2)
        if len(missed):
            words, old = [words[i] for i in missed.tolist()], self.old
            self.young.update({w: old[w] for w in words if w in old})
            new = [w for w in dict.fromkeys(words) if w not in self.young]
            if new:
                learn(new)
            ids[missed] = self._young_ids(words)
        return ids

    def _young_ids(self, words: list[str]) -> np.ndarray:
        return np.fromiter(map(self.young.get, words, repeat(-2)), np.int64, len(words))

    def age(self) -> None:
        if len(self.young) > self.limit:
            self.old, self.young = self.young, {}


class _Vocabulary:
    """Term ids as bm25s's Tokenizer.streaming_tokenize gives them ("" first, then the stems in
    order of first use; a passage of stop words only is [""]) without its dictionaries of every
    word and stem: on real text three Python dicts of a million terms were most of a shard
    build's memory, growing with the corpus. Here the known stems are a sorted array of their
    64-bit hashes with their 32-bit ids (12 bytes a term), each new stem's string is
    appended to `terms.txt` (id order), and the words in use keep their id in a two-generation
    cache of about `cached` words (_WordIds). Two stems would share an id only if their 64-bit
    hashes collide, as in the search's terms.table.npy."""

    def __init__(self, terms: Path, analyser: Analyser, cached: int = 1 << 16):
        self.analyser = analyser
        self.keys = np.zeros(0, dtype=np.uint64)  # stem hashes, sorted
        self.values = np.zeros(0, dtype=np.uint32)  # their ids
        self.pending: dict[int, int] = {}  # stems new in this chunk: hash -> id
        self.count = 0  # terms numbered
        self.words = _WordIds(cached)
        self.terms = terms.open("w", encoding="utf-8")
        self._learn([""], [""])

    def __len__(self) -> int:
        return self.count

    def tokenise(self, texts: list[str], group: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Every text's term ids (uint32), concatenated, and each text's count. Texts are split
        a group at a time: fewer strings alive at once (on 1 GB of real text groups of 32 were
        faster than 8 or 128); words are mapped by the cache in C, and only the words it misses
        go through Python."""
        parts, lengths = [], np.zeros(len(texts), dtype=np.int64)
        for start in range(0, len(texts), group):
            split = [self.analyser.words(text) for text in texts[start : start + group]]
            words = list(chain.from_iterable(split))
            ids = self.words.ids(words, self._learn_new)
            counts = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
            text = np.repeat(np.arange(len(split)), counts)
            kept = ids >= 0  # stop words dropped; a text of none keeps bm25s's "" (id 0)
            found = np.bincount(text[kept], minlength=len(split))
            empty = np.flatnonzero(found == 0)
            ends = np.cumsum(found)
            parts.append(np.insert(ids[kept], ends[empty] - found[empty], 0).astype(np.uint32))
            lengths[start : start + len(split)] = np.maximum(found, 1)
        self._merge_pending()
        self.words.age()
        return np.concatenate(parts) if parts else np.zeros(0, np.uint32), lengths

    def _learn_new(self, new: list[str]) -> None:
        stop = self.analyser.stopwords
        content = [w for w in new if w not in stop]
        self.words.young.update((w, -1) for w in new if w in stop)
        self._learn(content, self.analyser.stems(content))

    def _learn(self, words: list[str], stems: list[str]) -> None:
        hashes = np.fromiter(map(stable_hash, stems), dtype=np.uint64, count=len(stems))
        at = np.minimum(np.searchsorted(self.keys, hashes), max(len(self.keys) - 1, 0))
        known = self.keys[at] == hashes if len(self.keys) else np.zeros(len(hashes), bool)
        ids = np.where(known, self.values[at].astype(np.int64) if len(self.keys) else 0, -1)
        for i in np.flatnonzero(~known).tolist():  # in order of first use, as bm25s numbers them
            key = int(hashes[i])
            term_id = self.pending.get(key)
            if term_id is None:
                term_id = self.pending[key] = self.count
                self.count += 1
                self.terms.write(stems[i] + "\n")
            ids[i] = term_id
        self.words.young.update(zip(words, ids.tolist()))

    def _merge_pending(self) -> None:
        if not self.pending:
            return
        keys = np.fromiter(self.pending, dtype=np.uint64, count=len(self.pending))
        order = np.argsort(keys)
        where = np.searchsorted(self.keys, keys[order])
        self.keys = np.insert(self.keys, where, keys[order])
        values = np.fromiter(self.pending.values(), dtype=np.uint32, count=len(self.pending))
        self.values = np.insert(self.values, where, values[order])
        self.pending = {}

    def close(self, hashes_file: Path) -> None:
        self._merge_pending()
        self.terms.close()
        hashes = np.zeros(self.count, dtype=np.uint64)  # id -> stem hash
        hashes[self.values] = self.keys
        np.save(hashes_file, hashes)


class _Tokenised:
    """The read's postings side: chunks of passage texts -> sorted runs of postings, document
    frequencies counted."""

    def __init__(self, directory: Path, config: IndexConfig):
        self.vocabulary = _Vocabulary(directory / "terms.txt", Analyser(config.stem))
        self.runs = SortedRuns(directory / "runs" / "postings", POSTINGS, config.merge_memory)
        self.doc_freqs = np.zeros(0, dtype=np.int32)  # by term id, with room to grow
        self.texts: list[str] = []
        self.first = 0  # shard passage id of texts[0]
        self.tokens = 0

    def add(self, text: str, chunk: int) -> None:
        self.texts.append(text)
        if len(self.texts) >= chunk:
            self.flush()

    def flush(self) -> None:
        if not self.texts:
            return
        flat, lengths = self.vocabulary.tokenise(self.texts)
        self.tokens += len(flat)
        passages = np.arange(self.first, self.first + len(self.texts), dtype=np.uint64)
        terms = flat.astype(np.uint64)
        keys, tf = np.unique(
            (terms << np.uint64(32)) | np.repeat(passages, lengths), return_counts=True
        )
        term_ids = (keys >> np.uint64(32)).astype(np.int64)
        if len(self.vocabulary) > len(self.doc_freqs):
            grown = np.zeros(max(len(self.vocabulary), len(self.doc_freqs) * 5 // 4), np.int32)
            grown[: len(self.doc_freqs)] = self.doc_freqs
            self.doc_freqs = grown
        present, counts = np.unique(term_ids, return_counts=True)  # one key per (term, passage)
        self.doc_freqs[present] += counts.astype(np.int32)
        self.runs.add(keys, tf=tf, length=lengths[(keys & _LOW32) - np.uint64(self.first)])
        self.first += len(self.texts)
        self.texts = []

    def close(self, directory: Path) -> None:
        """The vocabulary (terms.txt, term_hashes.npy) and document counts of the shard."""
        self.flush()
        self.vocabulary.close(directory / "term_hashes.npy")
        counts = np.zeros(len(self.vocabulary), np.int64)  # a shard of no passage has bm25s's ""
        counts[: len(self.doc_freqs)] = self.doc_freqs[: len(counts)]
        np.save(directory / "doc_freqs.npy", counts)


# --- the build directory ----------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    """One index build: its corpora, settings and shard count, and where it lives."""

    files: tuple[InputFile, ...]
    directory: Path  # the finished index
    config: IndexConfig
    shards: int

    @classmethod
    def of(cls, paths, directory: Path, config: IndexConfig) -> Build:
        files = tuple(file.described for file in corpus_files(list(paths), config))
        return cls(files, Path(directory), config, config.shard_count(list(files)))

    @classmethod
    def named(cls, paths, config: IndexConfig, known: dict[str, InputFile] | None = None) -> Build:
        """The build of `paths` in the cache, under their fingerprint (`corpus_fingerprint`);
        `known`: files the run described already (its inputs), by path."""
        files = corpus_files(list(paths), config, known)
        directory = Path(config.cache_dir) / _fingerprint(files, config)
        described = tuple(file.described for file in files)
        return cls(described, directory, config, config.shard_count(list(described)))

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(Path(file.path) for file in self.files)

    @property
    def work(self) -> Path:
        return self.directory.with_name(self.directory.name + ".build")

    def shard(self, rank: int) -> Path:
        return self.work / shard_name(rank)

    def ranges(self, rank: int) -> list[ByteRange]:
        return task_ranges(list(self.files), rank, self.shards)


@contextmanager
def dropped_on_corpus_error(build: Build):
    """A corpus error (a ValueError naming file:line) removes the build directory: its fix is an
    edited corpus, whose fingerprint differs, so nothing of this build would be reused. Any other
    failure leaves the finished shards for a rerun."""
    try:
        yield
    except ValueError:
        shutil.rmtree(build.work, ignore_errors=True)
        raise


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


@contextmanager
def large_arrays_mapped():
    """Within it, glibc's mmap threshold is fixed at its default (128 KiB). glibc raises the
    threshold (up to 32 MiB) whenever a larger mapped block is freed, so after a build's first
    chunk its per-chunk numpy arrays came from the heap, which fragmented and kept what they
    freed: a read step's RSS grew with the corpus (1 GB of real text: 182 MB peak, 168 with
    the threshold fixed; docs/benchmarks.md). Mapped arrays go back to the system when freed.
    On entering, the heap is trimmed: the threshold only applies to what the heap's free space
    cannot hold, so in a process that had run a step (or anything) before, arrays still came
    from the heap.
    On leaving, the threshold is set where glibc's own raising tops out (32 MiB; trimming at
    64 MiB): left at 128 KiB, every later allocation over it is a fresh mapping, which made
    torch's CPU training in the same process 1.4-1.7x slower. Nothing to do without glibc."""
    try:
        libc = ctypes.CDLL(None)
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 128 << 10)
        malloc_trim(0)
    try:
        yield
    finally:
        if mallopt is not None:
            mallopt(_M_MMAP_THRESHOLD, 32 << 20)
            mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def shard_name(rank: int) -> str:
    return f"s{rank:05d}"


def _temporary(path: Path) -> Path:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}-{time.time_ns()}")
    tmp.mkdir(parents=True)
    return tmp


def _publish(tmp: Path, path: Path) -> None:
    """Rename a finished temporary directory into place; when another process published it
    first, keep theirs (the same inputs give the same files)."""
    try:
        tmp.rename(path)
    except OSError:
        if not path.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


class _PageStore:
    """The pages of a shard's documents from compressed or parquet corpora, which have no byte
    offset to read a page at: consecutive pages in zstd frames of about `block` bytes (a frame
    per page made the store 60% of the text's size on short pages; a block compresses like the
    file), each page's docs.jsonl row holding [its frame's offset, its offset in the frame,
    its length]. `read_page` decompresses from the frame's start to the page's end."""

    def __init__(self, path: Path, block: int = 1 << 16):
        self._file, self._block = path.open("wb"), block
        self._compress = zstandard.ZstdCompressor(level=3).compress
        self._pages, self._start = bytearray(), 0

    def add(self, page: bytes) -> list[int]:
        entry = [self._start, len(self._pages), len(page)]
        self._pages += page
        if len(self._pages) >= self._block:
            self._flush()
        return entry

    def _flush(self) -> None:
        if self._pages:
            self._file.write(self._compress(bytes(self._pages)))
            self._start, self._pages = self._file.tell(), bytearray()

    def __enter__(self) -> _PageStore:
        return self

    def __exit__(self, *failed) -> None:
        if not failed[0]:
            self._flush()
        self._file.close()


def read_page(read, entry: list[int]) -> dict:
    """The page a docs.jsonl row's "page" entry names; `read(offset, size)` reads the store."""
    start, at, length = entry
    frame, out = zstandard.ZstdDecompressor().decompressobj(), bytearray()
    while len(out) < at + length:
        chunk = read(start, 1 << 16)
        if not chunk or frame.eof:
            raise EOFError(f"{PAGE_STORE}: the frame at {start} ends before its page")
        out += frame.decompress(chunk)
        start += len(chunk)
    return json.loads(out[at : at + length])


# --- 1. read ----------------------------------------------------------------------------------


@large_arrays_mapped()
def read_shard(build: Build, rank: int) -> None:
    """Pass 1 of shard `rank`: docs, passages, offsets, sorted runs, vocabulary and counts."""
    target = build.shard(rank)
    if (target / "read.json").exists():
        return
    tmp = _temporary(target)
    try:
        _read(build, rank, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, target)


def _read(build: Build, rank: int, tmp: Path) -> None:
    config, ranges = build.config, build.ranges(rank)
    tokenised = _Tokenised(tmp, config)
    pages = SortedRuns(tmp / "runs" / "pages", PAGES, config.merge_memory)
    counts = _Counts()
    offsets = NpyWriter(tmp / "passages.offsets.npy", np.int64)
    page_keys, page_rows, passage_offsets = [], [], array("q")
    progress = tqdm(
        desc=f"[index] read shard {rank}/{build.shards}",
        total=sum(r.end - r.start for r in ranges),
        unit="B",
        unit_scale=True,
        file=sys.stderr,
        mininterval=5,
        leave=False,
    )
    # (the bar is cleared before an error leaves this task, so the error's message that the
    # caller prints is never written over the bar's line by a late clean-up)
    with (
        progress,
        (tmp / "passages.jsonl").open("wb") as passages,
        (tmp / "docs.jsonl").open("wb") as docs,
        _PageStore(tmp / PAGE_STORE) as page_store,
    ):
        for corpus, offset, size, doc, packed in _documents(list(build.paths), ranges):
            progress.update(size)
            doc_id = doc["id"]
            url = str(doc.get("url") or doc_id)
            title = str(doc.get("title") or doc_id)
            row = {"id": doc_id, "url": url, "title": title, "corpus": corpus, "offset": offset}
            if packed is not None:  # a compressed corpus has no offset to read a page at
                row["page"] = page_store.add(packed)
            for key in dict.fromkeys(filter(None, (doc_id, url))):
                page_keys.append(stable_hash(key))
                page_rows.append(docs.tell())
            docs.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
            counts.documents += 1
            counts.text_bytes += len(doc["text"].encode())
            for text in split_passages(doc["text"], config.passage_words, config.passage_stride):
                passage_offsets.append(passages.tell())
                line = {"id": doc_id, "title": title, "url": url, "text": text}
                passages.write((json.dumps(line, ensure_ascii=False) + "\n").encode())
                tokenised.add(f"{title}. {text}", config.chunk_passages)
            if len(passage_offsets) >= config.chunk_passages:
                offsets.write(np.frombuffer(passage_offsets, dtype=np.int64))
                counts.passages += len(passage_offsets)
                passage_offsets = array("q")
            if len(page_keys) >= config.chunk_passages:
                pages.add(np.array(page_keys, np.uint64), row=np.array(page_rows, np.uint64))
                page_keys, page_rows = [], []
    tokenised.close(tmp)
    offsets.write(np.frombuffer(passage_offsets, dtype=np.int64))
    counts.passages += len(passage_offsets)
    offsets.close()
    pages.add(np.array(page_keys, dtype=np.uint64), row=np.array(page_rows, dtype=np.uint64))
    if counts.passages >= 2**31:
        raise ValueError(
            f"shard {rank}: {counts.passages:,} passages; bm25s's int32 passage ids hold < 2^31: "
            "use more shards (IndexConfig.shards / --shards)"
        )
    tokenised.runs.compact()  # the write step then only reads the runs (it may be rerun)
    pages.compact()
    counts.tokens = tokenised.tokens
    (tmp / "read.json").write_text(json.dumps(vars(counts)))  # last: the shard's read is done


# --- 2. count ---------------------------------------------------------------------------------


@large_arrays_mapped()
def count_terms(build: Build) -> None:
    """The corpus-wide document frequency of every term (`df.table.npy`, term hash -> count,
    engine/lookup's format), each shard's id of it (`terms.table.npy`) and the totals
    (`totals.json`), from every shard's read."""
    target = build.work / "df"
    if (target / "totals.json").exists():
        return
    missing = [shard_name(r) for r in range(build.shards) if not _done(build.shard(r), "read")]
    if missing:
        raise RuntimeError(f"index build {build.work}: shards not read yet: {missing[:8]}")
    totals = _Counts()
    for rank in range(build.shards):
        read = json.loads((build.shard(rank) / "read.json").read_text())
        for name in vars(totals):
            setattr(totals, name, getattr(totals, name) + read[name])
    if not totals.passages:
        raise ValueError(f"corpora {[str(p) for p in build.paths]}: no passages to index")
    tmp = _temporary(target)
    runs = SortedRuns(tmp / "runs", {"df": "int64"}, build.config.merge_memory)
    places = SortedRuns(tmp / "places", {"place": "uint64"}, build.config.merge_memory)
    for rank in range(build.shards):
        first = 0  # the block's first term id
        for hashes, doc_freqs in _term_blocks(build.shard(rank)):
            present = doc_freqs > 0  # a term of an empty shard's vocabulary (bm25s's "")
            runs.add(hashes[present], df=doc_freqs[present])
            ids = np.flatnonzero(present).astype(np.uint64) + np.uint64(first)
            places.add(hashes[present], place=ids | np.uint64(rank << SHARD_BITS))
            first += len(hashes)
    _write_streamed_table(tmp / "df.table.npy", _summed(runs.merged()))
    placed = in_table_order((b[KEY], b["place"]) for b in places.merged())
    _write_streamed_table(tmp / TERM_TABLE, placed)  # a term's shards ascending (index.py)
    shutil.rmtree(tmp / "runs")
    shutil.rmtree(tmp / "places")
    _write_shard_table(build, tmp)
    (tmp / "totals.json").write_text(json.dumps(vars(totals)))
    _publish(tmp, target)


def _write_shard_table(build: Build, tmp: Path) -> None:
    """pages.table.npy (engine/lookup.py's format): every document id and url -> the shards
    holding it, merged from the shards' page runs, so a page is found with one look-up here and
    one in its shard's docs.table.npy, however many shards the index has."""
    memory = build.config.merge_memory
    runs = SortedRuns(tmp / "runs", {"shard": "uint64"}, memory)
    for rank in range(build.shards):
        pages = SortedRuns.reopen(build.shard(rank) / "runs" / "pages", PAGES, memory)
        for block in pages.merged():
            runs.add(block[KEY], shard=np.full(len(block[KEY]), rank, np.uint64))
    _write_streamed_table(tmp / SHARD_TABLE, ((b[KEY], b["shard"]) for b in runs.merged()))
    shutil.rmtree(tmp / "runs")


def _done(shard: Path, step: str) -> bool:
    return (shard / ("read.json" if step == "read" else "index/term_max.npy")).exists()


def _term_blocks(shard: Path, rows: int = 1 << 17) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The shard's terms' hashes (in its vocabulary's id order) and their document counts,
    `rows` terms at a time (read, not mapped: pages of a mapped file would count in the task's
    RSS)."""
    hashes, doc_freqs = NpyArray(shard / "term_hashes.npy"), NpyArray(shard / "doc_freqs.npy")
    for start in range(0, len(hashes), rows):
        stop = min(start + rows, len(hashes))
        yield hashes.read(start, stop), doc_freqs.read(start, stop)


def _summed(blocks):
    """(keys, sums) of merged (key, df) blocks, each key once (equal keys may span blocks)."""
    carry_key, carry = None, 0
    for block in blocks:
        keys, values = block[KEY], block["df"]
        if not len(keys):
            continue
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        unique, sums = keys[starts], np.add.reduceat(values, starts)
        if carry_key is not None and unique[0] == carry_key:
            sums[0] += carry
        elif carry_key is not None:
            yield np.array([carry_key], np.uint64), np.array([carry], np.int64)
        if len(unique) > 1:
            yield unique[:-1], sums[:-1]
        carry_key, carry = unique[-1], int(sums[-1])
    if carry_key is not None:
        yield np.array([carry_key], np.uint64), np.array([carry], np.int64)


def _write_streamed_table(path: Path, blocks) -> None:
    """A look-up table (engine/lookup.py's format: the hashes row, then the values row) from
    (hashes, values) blocks in hash order, never whole in memory: the hashes are written as
    the blocks come, the values to a side file appended after them."""
    table = NpyWriter(path, np.uint64)
    side = path.with_name(path.name + ".values")
    with side.open("wb") as values:
        for hashes, numbers in blocks:
            table.write(hashes)
            values.write(np.asarray(numbers).astype(np.uint64, copy=False).data)
    with side.open("rb") as handle:
        for part in iter(lambda: handle.read(1 << 24), b""):
            table.write(np.frombuffer(part, dtype=np.uint64))
    side.unlink()
    table.close((2, table.count // 2))


def _corpus_frequencies(shard: Path, table: Path, block: int = 1 << 16) -> np.ndarray:
    """The corpus-wide document count of each of the shard's terms (by term id; 0 for a term
    no passage of the shard holds: bm25s's "" when none is empty), in a merge of the shard's
    terms sorted by hash against `df.table.npy` read a block at a time (the table, as big as
    the corpus's vocabulary, is never held whole)."""
    hashes = np.load(shard / "term_hashes.npy")
    order = np.argsort(hashes)
    wanted = hashes[order]
    del hashes
    present = np.load(shard / "doc_freqs.npy")[order] > 0
    out = np.zeros(len(wanted), dtype=np.int64)  # in hash order, then by term id
    shape, _, dtype, offset = npy_header(table)
    size, found = shape[1], 0
    with table.open("rb") as handle:
        for lo in range(0, size, block):
            hi = min(lo + block, size)
            handle.seek(offset + lo * 8)
            keys = np.frombuffer(handle.read((hi - lo) * 8), dtype)
            first = np.searchsorted(wanted, keys[0], side="left")
            last = np.searchsorted(wanted, keys[-1], side="right")
            at = first + np.flatnonzero(present[first:last])
            if not len(at):
                continue
            handle.seek(offset + (size + lo) * 8)
            values = np.frombuffer(handle.read((hi - lo) * 8), dtype)
            where = np.searchsorted(keys, wanted[at])
            if not np.array_equal(keys[where], wanted[at]):
                raise RuntimeError(f"{table}: a shard's term is missing from the corpus counts")
            out[at] = values[where].astype(np.int64)
            found += len(at)
    if found != np.count_nonzero(present):
        raise RuntimeError(f"{table}: a shard's term is missing from the corpus counts")
    del wanted, present
    frequencies = np.empty_like(out)
    frequencies[order] = out
    return frequencies


# --- 3. write ---------------------------------------------------------------------------------


@large_arrays_mapped()
def write_shard(build: Build, rank: int) -> None:
    """Pass 2 of shard `rank`: its bm25s files, term_max.npy and docs.table.npy under
    <shard>/index, scored with the corpus's statistics."""
    shard = build.shard(rank)
    target = shard / "index"
    if not _done(shard, "write"):
        if not (build.work / "df" / "totals.json").exists():
            raise RuntimeError(f"index build {build.work}: the term counts are not done")
        tmp = _temporary(target)
        try:
            _write_postings(shard, build, tmp)
            pages = SortedRuns.reopen(shard / "runs" / "pages", PAGES, build.config.merge_memory)
            _write_page_table(pages, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _publish(tmp, target)
    shutil.rmtree(shard / "runs", ignore_errors=True)


def _write_postings(shard: Path, build: Build, tmp: Path) -> None:
    retriever = bm25s.BM25()
    if retriever.method in retriever.methods_requiring_nonoccurrence:
        raise ValueError(
            f"bm25s method {retriever.method!r}: a streamed build supports no BM25L/BM25+"
        )
    totals = json.loads((build.work / "df" / "totals.json").read_text())
    postings = _write_terms(shard, retriever, tmp)
    dtype, int_dtype = np.dtype(retriever.dtype), np.dtype(retriever.int_dtype)
    frequencies = _corpus_frequencies(shard, build.work / "df" / "df.table.npy")
    idf = _idf(frequencies, totals["passages"], retriever.idf_method, dtype)
    del frequencies
    score_tf = _select_tfc_scorer(retriever.method)
    average = np.float64(totals["tokens"]) / totals["passages"]  # numpy's mean of the lengths
    term_max = np.zeros(len(idf), dtype=np.float64)
    data = NpyWriter(tmp / "bm25" / "data.csc.index.npy", dtype)
    indices = NpyWriter(tmp / "bm25" / "indices.csc.index.npy", int_dtype)
    runs = SortedRuns.reopen(shard / "runs" / "postings", POSTINGS, build.config.merge_memory)
    progress = tqdm(
        desc=f"[index] write {shard.name}",
        total=runs.rows,
        unit=" postings",
        file=sys.stderr,
        mininterval=5,
        leave=False,
    )
    with progress:
        for block in runs.merged():
            terms = (block[KEY] >> np.uint64(32)).astype(np.int64)
            tfc = score_tf(
                tf_array=block["tf"].astype(dtype),
                l_d=block["length"].astype(np.int64),
                l_avg=average,
                k1=retriever.k1,
                b=retriever.b,
                delta=retriever.delta,
            )
            scores = (idf[terms] * tfc).astype(dtype)
            data.write(scores)
            indices.write((block[KEY] & _LOW32).astype(int_dtype))
            starts = np.flatnonzero(np.diff(terms, prepend=-1))
            best = np.maximum.reduceat(scores, starts)
            term_max[terms[starts]] = np.maximum(term_max[terms[starts]], best)
            progress.update(len(terms))
    data.close()
    indices.close()
    if data.count != postings:
        raise RuntimeError(f"index build: {data.count} postings merged, {postings} counted")
    np.save(tmp / "term_max.npy", term_max)  # last: the shard's write is done


def _write_terms(shard: Path, retriever: bm25s.BM25, tmp: Path) -> int:
    """The shard's term files: bm25s's params, vocab and CSC indptr (its postings are written
    after, a block at a time); returns the shard's posting count. One array of the
    vocabulary's size is loaded at a time."""
    read = json.loads((shard / "read.json").read_text())
    doc_freqs = np.load(shard / "doc_freqs.npy")
    indptr = np.zeros(len(doc_freqs) + 1, dtype=np.int64)
    np.cumsum(doc_freqs, out=indptr[1:])
    del doc_freqs
    retriever.scores = {
        "data": np.zeros(0, retriever.dtype),
        "indices": np.zeros(0, retriever.int_dtype),
        "indptr": indptr,
        "num_docs": read["passages"],
    }
    retriever.vocab_dict, retriever.nonoccurrence_array = {}, None
    retriever.save(tmp / "bm25", show_progress=False)
    retriever.scores = None
    _write_vocab(shard / "terms.txt", tmp / "bm25" / "vocab.index.json")
    return int(indptr[-1])


def _idf(frequencies: np.ndarray, passages: int, method: str, dtype) -> np.ndarray:
    """bm25s's idf of each term (its own scalar function, once per distinct frequency)."""
    idf_of = _select_idf_scorer(method)
    distinct = np.unique(frequencies)
    values = np.array([idf_of(df=int(df), N=passages) for df in distinct], dtype=dtype)
    return values[np.searchsorted(distinct, frequencies)]


def _write_vocab(terms: Path, path: Path) -> None:
    """bm25s's vocab file ({term: id}, written by bm25s's own JSON functions, byte for byte what
    `BM25.save` writes) from terms.txt (one term a line, id order), streamed: the vocabulary is
    never a dict here."""
    separator = "," if json_functions.ORJSON_AVAILABLE else ", "
    with terms.open(encoding="utf-8") as lines, path.open("w", encoding="utf-8") as out:
        out.write("{")
        for term_id, line in enumerate(lines):
            entry = json_functions.dumps({line.rstrip("\n"): term_id}, ensure_ascii=False)
            out.write((separator if term_id else "") + entry[1:-1])
        out.write("}")


def _write_page_table(pages: SortedRuns, tmp: Path) -> None:
    """docs.table.npy (engine/lookup.py's format): id or url hash -> docs.jsonl row."""
    _write_streamed_table(tmp / "docs.table.npy", ((b[KEY], b["row"]) for b in pages.merged()))


# --- 4. finish --------------------------------------------------------------------------------


def finish(build: Build, started: float | None = None) -> dict:
    """stats.json, then the build directory renamed into place (a finished index: nothing to
    do). It may be killed anywhere and rerun: what its clean-up deletes (the term counts, the
    shards' term lists) is summed into finish.json first, and stats.json is written whole
    before the rename."""
    if (build.directory / "stats.json").exists():
        return json.loads((build.directory / "stats.json").read_text())
    if not (build.work / "stats.json").exists():
        facts = _finish_facts(build)
        _clean_up(build)
        stats = {"version": INDEX_VERSION, "corpora": [str(p) for p in build.paths], **facts}
        if started is not None:
            stats["build_seconds"] = round(time.perf_counter() - started, 2)
        stats["index_bytes"] = sum(
            f.stat().st_size
            for f in build.work.rglob("*")
            if f.is_file() and f.name != FINISH_FACTS
        )
        write_json(build.work / "stats.json", stats)
    (build.work / FINISH_FACTS).unlink(missing_ok=True)
    _publish(build.work, build.directory)
    return json.loads((build.directory / "stats.json").read_text())


FINISH_FACTS = "finish.json"


def _finish_facts(build: Build) -> dict:
    """The index's totals and shards, from the count step and the shards' reads (finish.json
    once summed: a rerun after the clean-up reads them there)."""
    saved = build.work / FINISH_FACTS
    if saved.exists():
        return json.loads(saved.read_text())
    missing = [shard_name(r) for r in range(build.shards) if not _done(build.shard(r), "write")]
    if missing:
        raise RuntimeError(f"index build {build.work}: shards not written yet: {missing[:8]}")
    totals = json.loads((build.work / "df" / "totals.json").read_text())
    facts = {key: totals[key] for key in ("documents", "passages", "text_bytes")}
    facts["vocabulary"] = npy_header(build.work / "df" / "df.table.npy")[0][1]  # distinct terms
    facts["shards"] = [
        {
            "name": shard_name(rank),
            "passages": json.loads((build.shard(rank) / "read.json").read_text())["passages"],
        }
        for rank in range(build.shards)
    ]
    write_json(saved, facts)
    return facts


def _clean_up(build: Build) -> None:
    """What only the build needed: killed tasks' temporary directories, the count step's
    directory (its term and page tables moved beside stats.json), the shards' term lists."""
    for leftover in [*build.work.glob("*.tmp*"), *build.work.glob("*/*.tmp*")]:
        shutil.rmtree(leftover, ignore_errors=True)
    for table in (TERM_TABLE, SHARD_TABLE):
        if (build.work / "df" / table).exists():
            (build.work / "df" / table).replace(build.work / table)
    shutil.rmtree(build.work / "df", ignore_errors=True)
    for rank in range(build.shards):
        for name in ("terms.txt", "term_hashes.npy", "doc_freqs.npy"):
            (build.shard(rank) / name).unlink(missing_ok=True)


def build_index(paths: list[Path], directory: Path, config: IndexConfig, log=print) -> dict:
    """Build the index of `paths` under `directory` in this process, shard after shard
    (data_synthesis/environment/jobs.py runs the same steps as tasks of datatrove jobs)."""
    started = time.perf_counter()
    build = Build.of(paths, directory, config)
    with dropped_on_corpus_error(build):
        for rank in range(build.shards):
            read_shard(build, rank)
        count_terms(build)
        for rank in range(build.shards):
            write_shard(build, rank)
    stats = finish(build, started)
    log(
        f"indexed {stats['documents']} documents ({stats['text_bytes'] / 1e6:.1f} MB) as "
        f"{stats['passages']} passages in {build.shards} shard(s) in "
        f"{time.perf_counter() - started:.1f} s -> {directory} "
        f"({stats['index_bytes'] / 1e6:.1f} MB)"
    )
    return stats
