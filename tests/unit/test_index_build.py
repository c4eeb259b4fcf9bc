"""The search index's streamed build (data_synthesis/environment/build.py) against bm25s itself.

The build sorts postings and pages in runs on disk and merges them (data_synthesis/engine/
sort.py), so its memory does not grow with the corpus; what it writes must be what bm25s's own
in-memory `BM25.index` writes for the same passages, array for array, and bm25s must load it.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import bm25s
import numpy as np
import pytest

from data_synthesis.engine.io import NpyWriter, stable_hash
from data_synthesis.engine.sort import KEY, SortedRuns
from data_synthesis.environment.build import IndexConfig, split_passages, stemmer
from data_synthesis.environment.index import CorpusIndex

WORDS = [f"w{i}" for i in range(400)] + [
    "the",
    "of",
    "and",
    "river",
    "rivers",
    "capital",
    "capitals",
]


def _merged(runs: SortedRuns) -> dict[str, np.ndarray]:
    blocks = list(runs.merged())
    return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}


@pytest.mark.parametrize("fan_in", [2, 64])
def test_sorted_runs_merge_every_row_once_in_key_order(tmp_path, fan_in):
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 3000, size=20_000, dtype=np.uint64)  # many equal keys
    runs = SortedRuns(tmp_path / f"runs{fan_in}", {"row": "int64"}, memory=1, fan_in=fan_in)
    start = 0
    while start < len(keys):
        stop = start + int(rng.integers(1, 1500))
        runs.add(keys[start:stop], row=np.arange(start, min(stop, len(keys))))
        start = stop
    assert len(runs._runs) > 2 * fan_in or fan_in == 64
    merged = _merged(runs)
    assert np.array_equal(merged[KEY], np.sort(keys))
    assert np.array_equal(np.sort(merged["row"]), np.arange(len(keys)))  # each row once
    assert np.array_equal(keys[merged["row"]], merged[KEY])  # with its own key


def test_npy_writer_writes_what_numpy_reads(tmp_path):
    writer = NpyWriter(tmp_path / "a.npy", np.uint64)
    for part in (np.arange(5), np.arange(5, 12)):
        writer.write(part)
    writer.close((2, 6))
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.arange(12, dtype=np.uint64).reshape(2, 6))
    with pytest.raises(ValueError, match="cannot have shape"):
        bad = NpyWriter(tmp_path / "b.npy", np.int64)
        bad.write(np.arange(3))
        bad.close((2, 2))


def _corpus(path: Path) -> Path:
    rng = random.Random(1)
    docs = []
    for i in range(300):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 400)))
        doc = {"id": f"d{i % 280}", "title": f"Title {rng.choice(WORDS)}", "text": text}
        if i % 3:
            doc["url"] = f"https://example.org/{i}"
        docs.append(doc)
    docs[7]["text"] = "the of and"  # only stop words: bm25s's empty token
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def test_streamed_build_equals_bm25s_index_and_loads_in_bm25s(tmp_path):
    corpus = _corpus(tmp_path / "corpus.jsonl")
    # 5 passages per run: about 130 runs, more than the merge's fan-in (a two-level merge)
    config = IndexConfig(cache_dir=str(tmp_path / "cache"), chunk_passages=5, merge_memory=1)
    index = CorpusIndex.open([corpus], config, log=lambda _: None)

    texts = []
    for line in corpus.read_text().splitlines():
        doc = json.loads(line)
        texts += [f"{doc['title']}. {t}" for t in split_passages(doc["text"], 120, 100)]
    tokenizer = bm25s.tokenization.Tokenizer(stopwords="en", stemmer=stemmer(True))
    reference = bm25s.BM25()
    reference.index(
        tokenizer.tokenize(texts, return_as="tuple", show_progress=False), show_progress=False
    )
    reference.save(tmp_path / "reference", show_progress=False)

    built, expected = index.directory / "bm25", tmp_path / "reference"
    assert index.stats["passages"] == len(texts) > 300
    for name in ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy"):
        ours, theirs = np.load(built / name), np.load(expected / name)
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), name
    for name in ("vocab.index.json", "params.index.json"):
        assert json.loads((built / name).read_text()) == json.loads(
            (expected / name).read_text()
        ), name
    loaded = bm25s.BM25.load(built)
    assert np.array_equal(loaded.get_scores(["w3", "river"]), reference.get_scores(["w3", "river"]))

    data, indptr = reference.scores["data"], reference.scores["indptr"]
    nonempty = np.flatnonzero(np.diff(indptr) > 0)
    term_max = np.zeros(len(indptr) - 1)
    term_max[nonempty] = np.maximum.reduceat(data, indptr[nonempty])
    assert np.array_equal(np.load(index.directory / "term_max.npy"), term_max)

    table = np.load(index.directory / "docs.table.npy")
    pages, offset = [], 0
    for line in (index.directory / "docs.jsonl").read_bytes().splitlines(keepends=True):
        row = json.loads(line)
        pages += [(stable_hash(key), offset) for key in dict.fromkeys((row["id"], row["url"]))]
        offset += len(line)
    assert sorted(zip(table[0].tolist(), table[1].tolist())) == sorted(pages)
    assert list(table[0]) == sorted(table[0])
    # a duplicated id's page is its first document (d5 is documents 5 and 285)
    assert index.page("d5")["text"] == json.loads(corpus.read_text().splitlines()[5])["text"]
    assert index.search("w17 river", k=3) and not (index.directory / "runs").exists()


def test_a_bad_line_leaves_no_index_and_no_runs(tmp_path):
    corpus = _corpus(tmp_path / "corpus.jsonl")
    with corpus.open("a") as handle:
        handle.write("{not json\n")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"corpus.jsonl:301: invalid JSON"):
        CorpusIndex.open([corpus], IndexConfig(cache_dir=str(cache), chunk_passages=5))
    assert list(cache.iterdir()) == []


def test_words_first_seen_after_the_first_chunk_are_searchable(tmp_path):
    """bm25s's tokenize() learns new words only while its vocabulary is empty (update_vocab=
    "if_empty"): tokenised a chunk at a time, the earlier build indexed no word first seen after
    the first chunk of 20,000 passages."""
    docs = [
        {"id": f"d{i}", "text": f"common words here {word}"}
        for i, word in enumerate(["alpha", "beta", "zanzibar"])
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    config = IndexConfig(cache_dir=str(tmp_path / "cache"), chunk_passages=1)
    index = CorpusIndex.open([corpus], config, log=lambda _: None)
    assert [hit.doc_id for hit in index.search("zanzibar")] == ["d2"]
    assert [hit.doc_id for hit in index.search("beta")] == ["d1"]


def test_index_build_benchmark_reports_each_checkout_and_compares_their_files(tmp_path):
    """benchmarks/bench_index_build.py (the figures in docs/benchmarks.md) at 1 MB, with this
    checkout as the earlier one too: both builds reported, and the same files."""
    repo = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(repo / "benchmarks/bench_index_build.py"), "--sizes-mb", "1"]
    command += ["--work", str(tmp_path), "--code", str(repo)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = re.findall(
        r"1 MB\s+(this|earlier)\s+([\d,]+) passages\s+([\d.]+) CPU s\s+peak RSS\s+([\d.]+) MB", out
    )
    assert [r[0] for r in rows] == ["this", "earlier"] and rows[0][1] == rows[1][1], out
    assert all(float(r[2]) > 0 and float(r[3]) > 50 for r in rows), out
    assert "same index files: yes" in out, out
