"""Building the search index (data_synthesis/environment/index.py) in memory that does not grow
with the corpus.

bm25s's own `BM25.index` takes every passage's token ids at once, as Python lists: 4.0 GB peak
RSS for 1 GB of text. Here the index is built in two passes, with bm25s's tokenizer and scoring
functions and in bm25s's file format:

1. The corpora are streamed once: each document gets a row in `docs.jsonl`, each passage a line
   in `passages.jsonl` and its byte offset in `passages.offsets.npy`; passages are tokenised a
   chunk at a time (one growing vocabulary, as before), and each chunk's postings
   (term, passage) -> (term frequency, passage length) become a sorted run on disk, as do the
   pages' (hash of id or url -> docs.jsonl row). Document frequencies and the total passage
   length are counted on the way.
2. The postings runs are merged in (term, passage) order (data_synthesis/engine/sort.py) and each
   posting is scored as bm25s scores it (its idf and term-frequency functions for the
   retriever's method, from the document frequencies and the average passage length); bm25s's
   CSC arrays are written a block at a time, with each term's best score (`term_max.npy`,
   MaxScore's bounds). The page runs are merged into `docs.table.npy`, and the vocabulary is
   written as `vocab.table.npy` (term hash -> id), which searches use instead of bm25s's dict.

bm25s writes its own vocab and params files (saving a retriever with the real indptr and empty
score arrays, which are then written here), so `bm25s.BM25.load` reads the result;
tests/unit/test_index_build.py checks the arrays equal what `BM25.index` gives for the same
passages. What memory a build holds: the vocabulary (tokenizer dicts and one integer per term),
one chunk of passages, and the merge buffers (`merge_memory`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
from bm25s.scoring import _build_idf_array, _select_idf_scorer, _select_tfc_scorer
from tqdm import tqdm

from data_synthesis.engine.io import NpyWriter, stable_hash
from data_synthesis.engine.lookup import write_table
from data_synthesis.engine.sort import KEY, SortedRuns

# v2: docs.table.npy; v3: term_max.npy; v4: every chunk's words; v5: vocab.table.npy
INDEX_VERSION = "bm25s-passages-v5"
# Indexes are shared by every run on a machine (the fingerprint keeps corpora apart).
DEFAULT_CACHE = os.environ.get(
    "MEGATRON_AGENTIC_INDEX_CACHE",
    os.path.join(os.path.expanduser("~"), ".cache", "megatron-agentic", "environment"),
)
_WORD = re.compile(r"\S+")
_LOW32 = np.uint64(0xFFFFFFFF)


@dataclass(frozen=True)
class IndexConfig:
    """How corpora are cut into passages, where indexes are cached, and the build's memory."""

    cache_dir: str = DEFAULT_CACHE
    passage_words: int = 120
    passage_stride: int = 100
    stem: bool = True
    chunk_passages: int = 8192  # passages tokenised per sorted run of postings
    merge_memory: int = 8 << 20  # bytes of read buffers while merging the runs


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
    """sha256 of the corpora's bytes and of everything that changes the index."""
    digest = hashlib.sha256(INDEX_VERSION.encode())
    stem = stemmer(config.stem) is not None
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
    """(corpus index, byte offset, line length, document) for every line; errors name file:line."""
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
                yield corpus, start, len(line), doc


@dataclass
class _Counts:
    """What pass 1 counted."""

    documents: int = 0
    text_bytes: int = 0
    passages: int = 0
    tokens: int = 0


class _Tokenised:
    """Pass 1's postings side: chunks of passage texts -> sorted runs of postings, document
    frequencies and lengths counted."""

    def __init__(self, runs: Path, config: IndexConfig):
        self.tokenizer = bm25s.tokenization.Tokenizer(stopwords="en", stemmer=stemmer(config.stem))
        self.runs = SortedRuns(runs, {"tf": "uint32", "length": "uint32"}, config.merge_memory)
        self.doc_freqs = np.zeros(0, dtype=np.int64)
        self.texts: list[str] = []
        self.first = 0  # passage id of texts[0]
        self.tokens = 0

    def add(self, text: str, chunk: int) -> None:
        self.texts.append(text)
        if len(self.texts) >= chunk:
            self.flush()

    def flush(self) -> None:
        if not self.texts:
            return
        flat, lengths = array("I"), np.zeros(len(self.texts), dtype=np.int64)
        for i, ids in enumerate(self.tokenizer.streaming_tokenize(self.texts)):
            flat.extend(ids)
            lengths[i] = len(ids)
        self.tokens += len(flat)
        passages = np.arange(self.first, self.first + len(self.texts), dtype=np.uint64)
        terms = np.frombuffer(flat, dtype=np.uint32).astype(np.uint64)
        keys, tf = np.unique(
            (terms << np.uint64(32)) | np.repeat(passages, lengths), return_counts=True
        )
        term_ids = (keys >> np.uint64(32)).astype(np.int64)
        vocabulary = len(self.tokenizer.get_vocab_dict())
        counts = np.bincount(term_ids, minlength=vocabulary)
        counts[: len(self.doc_freqs)] += self.doc_freqs
        self.doc_freqs = counts
        self.runs.add(keys, tf=tf, length=lengths[(keys & _LOW32) - np.uint64(self.first)])
        self.first += len(self.texts)
        self.texts = []


def _read_corpora(
    paths: list[Path], tmp: Path, config: IndexConfig
) -> tuple[_Tokenised, SortedRuns, _Counts]:
    """Pass 1: docs.jsonl, passages.jsonl, passages.offsets.npy, and the sorted runs."""
    tokenised = _Tokenised(tmp / "runs" / "postings", config)
    pages = SortedRuns(tmp / "runs" / "pages", {"row": "uint64"}, config.merge_memory)
    counts = _Counts()
    offsets = NpyWriter(tmp / "passages.offsets.npy", np.int64)
    page_keys, page_rows, passage_offsets = [], [], array("q")
    progress = tqdm(
        desc="[index] read",
        total=sum(path.stat().st_size for path in paths),
        unit="B",
        unit_scale=True,
        file=sys.stderr,
        mininterval=5,
        leave=False,
    )
    with (tmp / "passages.jsonl").open("wb") as passages, (tmp / "docs.jsonl").open("wb") as docs:
        for corpus, offset, size, doc in _documents(paths):
            progress.update(size)
            doc_id = str(doc.get("id") or doc.get("url"))
            url = str(doc.get("url") or doc_id)
            title = str(doc.get("title") or doc_id)
            row = {"id": doc_id, "url": url, "title": title, "corpus": corpus, "offset": offset}
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
    progress.close()
    tokenised.flush()
    offsets.write(np.frombuffer(passage_offsets, dtype=np.int64))
    counts.passages += len(passage_offsets)
    offsets.close()
    pages.add(np.array(page_keys, dtype=np.uint64), row=np.array(page_rows, dtype=np.uint64))
    counts.tokens = tokenised.tokens
    return tokenised, pages, counts


def _write_postings(tokenised: _Tokenised, passages: int, tmp: Path) -> int:
    """Pass 2: bm25s's index files under tmp/bm25 and term_max.npy; returns the vocabulary size."""
    retriever = bm25s.BM25()
    if retriever.method in retriever.methods_requiring_nonoccurrence:
        raise ValueError(
            f"bm25s method {retriever.method!r}: a streamed build supports no BM25L/BM25+"
        )
    vocab = dict(tokenised.tokenizer.get_vocab_dict())
    doc_freqs = np.zeros(len(vocab), dtype=np.int64)
    doc_freqs[: len(tokenised.doc_freqs)] = tokenised.doc_freqs
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(doc_freqs, out=indptr[1:])
    write_table(tmp / "vocab.table.npy", vocab.items())  # terms -> ids, for searches
    if "" not in vocab:  # as BM25.index(create_empty_token=True) adds it
        vocab[""] = max(vocab.values()) + 1
    dtype, int_dtype = np.dtype(retriever.dtype), np.dtype(retriever.int_dtype)
    retriever.scores = {
        "data": np.zeros(0, dtype),
        "indices": np.zeros(0, int_dtype),
        "indptr": indptr,
        "num_docs": passages,
    }
    retriever.vocab_dict, retriever.nonoccurrence_array = vocab, None
    retriever.save(tmp / "bm25", show_progress=False)
    frequencies = dict(enumerate(doc_freqs.tolist()))
    idf = _build_idf_array(frequencies, passages, _select_idf_scorer(retriever.idf_method), dtype)
    score_tf = _select_tfc_scorer(retriever.method)
    average = np.float64(tokenised.tokens) / passages  # = numpy's mean of the passage lengths
    term_max = np.zeros(len(doc_freqs), dtype=np.float64)
    data = NpyWriter(tmp / "bm25" / "data.csc.index.npy", dtype)
    indices = NpyWriter(tmp / "bm25" / "indices.csc.index.npy", int_dtype)
    progress = tqdm(
        desc="[index] merge",
        total=tokenised.runs.rows,
        unit=" postings",
        file=sys.stderr,
        mininterval=5,
        leave=False,
    )
    for block in tokenised.runs.merged():
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
    progress.close()
    data.close()
    indices.close()
    if data.count != indptr[-1]:
        raise RuntimeError(f"index build: {data.count} postings merged, {indptr[-1]} counted")
    np.save(tmp / "term_max.npy", term_max)
    return len(doc_freqs)


def _write_page_table(pages: SortedRuns, path: Path) -> None:
    """docs.table.npy (engine/lookup.py's format): the hashes row, then the rows row."""
    table = NpyWriter(path, np.uint64)
    rows_file = path.with_name(path.name + ".rows")
    with rows_file.open("wb") as rows:
        for block in pages.merged():
            table.write(block[KEY])
            rows.write(block["row"].astype(np.uint64).tobytes())
    with rows_file.open("rb") as rows:
        for part in iter(lambda: rows.read(1 << 24), b""):
            table.write(np.frombuffer(part, dtype=np.uint64))
    rows_file.unlink()
    table.close((2, table.count // 2))


def build_index(paths: list[Path], directory: Path, config: IndexConfig, log=print) -> dict:
    """Build the index of `paths` under `directory` (written to a temp dir, then renamed)."""
    started = time.perf_counter()
    tmp = directory.with_name(directory.name + f".tmp{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        tokenised, pages, counts = _read_corpora(paths, tmp, config)
        if not counts.passages:
            raise ValueError(f"corpora {[str(p) for p in paths]}: no passages to index")
        if counts.passages >= 2**31:
            raise ValueError(
                f"{counts.passages:,} passages: bm25s's int32 passage ids hold < 2^31; shard the corpus"
            )
        vocabulary = _write_postings(tokenised, counts.passages, tmp)
        _write_page_table(pages, tmp / "docs.table.npy")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp / "runs")
    stats = {
        "corpora": [str(p) for p in paths],
        "documents": counts.documents,
        "passages": counts.passages,
        "text_bytes": counts.text_bytes,
        "vocabulary": vocabulary,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    stats["index_bytes"] = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1))
    try:
        tmp.rename(directory)
    except OSError:  # another process built it meanwhile: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    log(
        f"indexed {counts.documents} documents ({counts.text_bytes / 1e6:.1f} MB) as "
        f"{counts.passages} passages in {stats['build_seconds']} s -> {directory} "
        f"({stats['index_bytes'] / 1e6:.1f} MB)"
    )
    return stats
