"""The search index's streamed build (data_synthesis/environment/build.py) against bm25s itself.

The build sorts postings and pages in runs on disk and merges them (data_synthesis/engine/
sort.py), so its memory does not grow with the corpus; what it writes must be what bm25s's own
in-memory `BM25.index` writes for the same passages, array for array, and bm25s must load it.
"""

from __future__ import annotations

import json
import platform
import random
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import bm25s
import numpy as np
import pytest

from data_synthesis.engine.io import NpyWriter, stable_hash
from data_synthesis.engine.lookup import write_hashed_table
from data_synthesis.engine.sort import KEY, MIN_BLOCK, DistinctRows, SortedRuns
from data_synthesis.environment import index as index_module
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
    memory = 3 * MIN_BLOCK * 16 * fan_in  # a block of 1,024 rows for each of fan_in runs
    runs = SortedRuns(tmp_path / f"runs{fan_in}", {"row": "int64"}, memory, fan_in=fan_in)
    assert runs.fan_in == fan_in
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


def test_a_merge_of_many_runs_keeps_to_its_memory(tmp_path):
    """A run is read at least MIN_BLOCK rows at a time, so a merge's fan-in is what `memory`
    has room for: 40 runs of 4,096 rows (16 bytes each) merged in 256 KiB peak at 1.5x it
    (8.7x until 2026-12-05, when 64 runs were merged at once whatever the memory)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    memory = 256 << 10
    runs = SortedRuns(tmp_path / "runs", {"value": "uint64"}, memory)
    assert runs.fan_in == 5
    for _ in range(40):
        keys = rng.integers(0, 2**63, 4096, dtype=np.uint64)
        runs.add(keys, value=np.arange(4096, dtype=np.uint64))
    tracemalloc.start()
    previous, rows = 0, 0
    for block in runs.merged():
        assert block[KEY][0] >= previous
        previous, rows = block[KEY][-1], rows + len(block[KEY])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rows == 40 * 4096 and peak < 2 * memory, peak


@pytest.mark.parametrize("held, fan_in", [(0, 64), (7, 64), (7, 3)])
def test_distinct_rows_come_out_once_each_in_order(held, fan_in):
    """Rows of strings spilled in sorted runs (`held` rows at a time; 0: the default, all in
    memory here) and merged, runs past `fan_in` merged first: each distinct row once, in
    order, whatever the characters."""
    rng = np.random.default_rng(1)
    words = ["a", "b", "Zürich", "line\nbreak", '"quoted"', "é", ""]
    rows = [
        (int(rng.integers(0, 4)), str(rng.choice(words)), f"v{rng.integers(0, 30)}")
        for _ in range(300)
    ]
    distinct = DistinctRows(held, fan_in)
    for row in rows:
        distinct.add(row)
    assert bool(distinct.runs) == bool(held) and len(distinct.runs) < fan_in
    assert list(distinct.sorted()) == sorted(set(rows))


def test_term_counts_are_summed_across_shards_and_merge_blocks(tmp_path):
    """The count step sums each term's document counts over the shards' runs; with tiny merge
    buffers a term's rows span blocks, and each term still comes out once with its total."""
    from data_synthesis.environment.build import _summed

    rng = np.random.default_rng(3)
    # fan-in 2: runs merged into longer runs first, which hold a term once per shard
    runs = SortedRuns(tmp_path / "df", {"df": "int64"}, memory=1, fan_in=2)
    keys, counts = [], []
    for _ in range(7):  # seven shards' vocabularies, overlapping
        shard_keys = np.unique(rng.integers(0, 4000, size=3000, dtype=np.uint64))
        shard_counts = rng.integers(1, 50, size=len(shard_keys))
        runs.add(shard_keys, df=shard_counts)
        keys.append(shard_keys)
        counts.append(shard_counts)
    blocks = list(runs.merged())
    spanning = [a[KEY][-1] == b[KEY][0] for a, b in zip(blocks, blocks[1:])]
    assert any(spanning)  # small blocks: some term's rows span two of them
    summed = list(_summed(blocks))
    got_keys = np.concatenate([k for k, _ in summed])
    got_counts = np.concatenate([c for _, c in summed])
    want_keys, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    assert np.array_equal(got_keys, want_keys)
    assert np.array_equal(got_counts, np.bincount(inverse, weights=np.concatenate(counts)))


def test_corpus_frequencies_are_merged_from_the_table_by_term_id(tmp_path):
    """The write step's corpus-wide document counts, read from df.table.npy a block at a time
    against the shard's terms sorted by hash: each term's count at its id, 0 for a term no
    passage of the shard holds (bm25s's ""), and an error naming the table when a term the
    shard holds is missing from it."""
    from data_synthesis.environment.build import _corpus_frequencies

    rng = np.random.default_rng(5)
    shard = tmp_path / "shard"
    shard.mkdir()
    corpus = np.unique(rng.integers(0, 1 << 63, size=500, dtype=np.uint64))
    counts = rng.integers(1, 1000, size=len(corpus)).astype(np.uint64)
    terms = rng.permutation(corpus)[:120]  # the shard's terms, in id order
    doc_freqs = rng.integers(1, 9, size=len(terms))
    doc_freqs[0] = 0
    np.save(shard / "term_hashes.npy", terms)
    np.save(shard / "doc_freqs.npy", doc_freqs)
    table = tmp_path / "df.table.npy"
    write_hashed_table(table, corpus, counts)
    want = counts[np.searchsorted(corpus, terms)].astype(np.int64)
    want[0] = 0
    for block in (1, 7, 1 << 16):
        assert np.array_equal(_corpus_frequencies(shard, table, block=block), want)
    keep = corpus != terms[5]
    write_hashed_table(table, corpus[keep], counts[keep])
    with pytest.raises(RuntimeError, match="df.table.npy: a shard's term is missing"):
        _corpus_frequencies(shard, table, block=7)


FAULTS = """
import json, resource, numpy as np
from data_synthesis.environment.build import large_arrays_mapped

def faults_of_fresh_arrays():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        np.ones(1 << 17)  # 1 MiB, written then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

with large_arrays_mapped():
    inside = faults_of_fresh_arrays()
after = faults_of_fresh_arrays()
with large_arrays_mapped():  # a later step: the heap has room for the arrays now
    again = faults_of_fresh_arrays()
print(json.dumps([inside, after, again]))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mmap threshold")
def test_the_build_maps_large_arrays_and_leaves_the_allocator_fast_after():
    """Within the build's steps a freed 1 MiB array goes back to the system, so the next one
    is fresh pages (page faults); after them, freed arrays are reused from the heap again
    (left fixed at 128 KiB, torch's training in the same process ran 1.4-1.7x slower). A
    later step maps them again: without trimming the heap on entering, arrays that fit its
    free space came from it (0 faults; the suite's long-lived process saw this). In a fresh
    process, so the allocator's state is the script's own."""
    done = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    inside, after, again = json.loads(done.stdout)
    assert inside >= 50 * 200 and again >= 50 * 200  # 256 pages an array
    assert after < inside / 5


def test_look_up_tables_are_the_files_numpy_saves(tmp_path):
    """write_hashed_table writes its rows one at a time; the file is np.save's, byte for byte."""
    rng = np.random.default_rng(6)
    hashes = rng.integers(0, 1 << 63, size=1000, dtype=np.uint64)
    hashes[:10] = hashes[10]  # equal hashes: sorted by value
    values = rng.integers(0, 1 << 40, size=1000, dtype=np.uint64)
    write_hashed_table(tmp_path / "a.table.npy", hashes, values)
    order = np.lexsort((values, hashes))
    np.save(tmp_path / "b.npy", np.stack([hashes[order], values[order]]))
    assert (tmp_path / "a.table.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()


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


def test_streamed_build_equals_bm25s_index_and_loads_in_bm25s(tmp_path, monkeypatch):
    from data_synthesis.environment import build

    # the vocabulary's arrays read a few terms at a time: many blocks of each in every step
    monkeypatch.setattr(build, "_term_blocks", partial(build._term_blocks, rows=7))
    monkeypatch.setattr(build, "_corpus_frequencies", partial(build._corpus_frequencies, block=5))
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

    shard = index.shards[0].directory
    built, expected = shard / "index" / "bm25", tmp_path / "reference"
    assert index.stats["passages"] == len(texts) > 300
    assert index.stats["vocabulary"] == len(reference.vocab_dict) - 1  # bm25s adds ""
    for name in ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy"):
        ours, theirs = np.load(built / name), np.load(expected / name)
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), name
    assert (built / "vocab.index.json").read_bytes() == (expected / "vocab.index.json").read_bytes()
    name = "params.index.json"
    assert json.loads((built / name).read_text()) == json.loads((expected / name).read_text())
    loaded = bm25s.BM25.load(built)
    assert np.array_equal(loaded.get_scores(["w3", "river"]), reference.get_scores(["w3", "river"]))

    data, indptr = reference.scores["data"], reference.scores["indptr"]
    nonempty = np.flatnonzero(np.diff(indptr) > 0)
    term_max = np.zeros(len(indptr) - 1)
    term_max[nonempty] = np.maximum.reduceat(data, indptr[nonempty])
    assert np.array_equal(np.load(shard / "index" / "term_max.npy"), term_max)
    terms = sorted(set(reference.vocab_dict) - {""})  # the term table, read 7 terms at a time
    assert index.term_ids(terms) == {0: [reference.vocab_dict[t] for t in terms]}

    table = np.load(shard / "index" / "docs.table.npy")
    pages, offset = [], 0
    for line in (shard / "docs.jsonl").read_bytes().splitlines(keepends=True):
        row = json.loads(line)
        pages += [(stable_hash(key), offset) for key in dict.fromkeys((row["id"], row["url"]))]
        offset += len(line)
    assert sorted(zip(table[0].tolist(), table[1].tolist())) == sorted(pages)
    assert list(table[0]) == sorted(table[0])
    # a duplicated id's page is its first document (d5 is documents 5 and 285)
    assert index.page("d5")["text"] == json.loads(corpus.read_text().splitlines()[5])["text"]
    assert index.search("w17 river", k=3) and not (shard / "runs").exists()


def test_a_bad_line_leaves_no_index_and_no_runs(tmp_path):
    corpus = _corpus(tmp_path / "corpus.jsonl")
    with corpus.open("a") as handle:
        handle.write("{not json\n")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"corpus.jsonl:301: not valid JSON"):
        CorpusIndex.open([corpus], IndexConfig(cache_dir=str(cache), chunk_passages=5))
    assert [p.name for p in cache.iterdir()] == ["identities"]  # the corpus file's identity only
    # the same through the datatrove jobs (3 shards, 2 workers): a clear error, no build left
    command = [sys.executable, "-m", "data_synthesis.environment", "index", str(corpus)]
    command += ["--cache-dir", str(cache), "--shards", "3", "--workers", "2"]
    done = subprocess.run(command, capture_output=True, text=True)
    # the message is the last line (datatrove logs the task's traceback first; a sibling task's
    # progress bar, cut short when the pool is terminated, may leave a partial line before it)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and re.search(r"error: \S*corpus.jsonl:301: not valid JSON", last)
    assert not [p for p in cache.iterdir() if p.name not in ("identities", "logs")]


def test_a_read_task_that_meets_a_bad_line_removes_the_build(tmp_path):
    """A SLURM array task of index_read runs alone: when its shard holds a bad line it fails
    with the line's place and removes the build (the shards its siblings finished included:
    the fixed corpus has another fingerprint), so no `<fingerprint>.build/` is left behind."""
    from data_synthesis.environment.build import Build
    from data_synthesis.environment.jobs import IndexStep

    corpus = _corpus(tmp_path / "corpus.jsonl")
    with corpus.open("a") as handle:
        handle.write("{not json\n")
    build = Build.of([corpus], tmp_path / "cache" / "idx", IndexConfig(shards=3))
    IndexStep("read", build).run(None, rank=0, world_size=3)
    assert (build.shard(0) / "read.json").exists()
    with pytest.raises(ValueError, match=r"corpus.jsonl:301: not valid JSON"):
        IndexStep("read", build).run(None, rank=2, world_size=3)
    assert not build.work.exists()


@pytest.mark.parametrize("stem", [True, False])
def test_vocabulary_numbers_terms_as_bm25s_without_its_dicts(tmp_path, stem):
    """The build's vocabulary (sorted stem hashes, a word cache cleared past `cached` words)
    gives every chunk the ids bm25s's streaming tokenizer gives, with the cache cleared after
    almost every chunk, and writes the terms in id order."""
    from data_synthesis.environment.build import Analyser, _Vocabulary

    rng = random.Random(2)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 30))) for _ in range(400)]
    texts[3] = "The of AND"  # stop words only: [""]
    vocabulary = _Vocabulary(tmp_path / "terms.txt", Analyser(stem), cached=20)
    tokenizer = bm25s.tokenization.Tokenizer(stopwords="en", stemmer=stemmer(stem))
    for start in range(0, len(texts), 7):
        chunk = texts[start : start + 7]
        flat, lengths = vocabulary.tokenise(chunk, group=3)
        flat = flat.tolist()
        theirs = list(tokenizer.streaming_tokenize(chunk))
        assert list(lengths) == [len(ids) for ids in theirs]
        assert list(flat) == [i for ids in theirs for i in ids]
    vocabulary.close(tmp_path / "hashes.npy")
    terms = (tmp_path / "terms.txt").read_text().splitlines()
    assert dict(zip(terms, range(len(terms)))) == tokenizer.get_vocab_dict()
    assert np.load(tmp_path / "hashes.npy").tolist() == [stable_hash(t) for t in terms]


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


def _searches(index: CorpusIndex, corpus: Path) -> list:
    rng = random.Random(2)
    queries = [" ".join(rng.sample(WORDS, rng.randint(1, 6))) for _ in range(150)]
    found = [[(h.doc_id, h.score, h.url, h.text) for h in index.search(q)] for q in queries]
    pages = [index.page(f"d{i}") for i in range(0, 280, 7)]
    return found + pages


def test_a_sharded_index_is_one_index_cut_in_pieces(tmp_path, monkeypatch):
    """Shards are contiguous runs of documents scored with the corpus's statistics: each term's
    postings over the shards, passage ids offset, are the one-shard index's, and every search
    and page look-up gives the same results. Built here by the datatrove jobs (the CLI with two
    workers), the path a cluster takes."""
    corpus = _corpus(tmp_path / "corpus.jsonl")
    one = CorpusIndex.open([corpus], IndexConfig(cache_dir=str(tmp_path / "one")), log=print)
    command = [sys.executable, "-m", "data_synthesis.environment", "index", str(corpus)]
    command += ["--cache-dir", str(tmp_path / "four"), "--shards", "4", "--workers", "2"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["passages"] == one.stats["passages"]
    four = CorpusIndex.open(
        [corpus], IndexConfig(cache_dir=str(tmp_path / "four"), shards=4), log=print
    )
    assert [s.passages > 0 for s in four.shards] == [True] * 4
    assert four.directory.name != one.directory.name  # an index is cached per layout
    whole = one.shards[0]
    for word in ["w3", "river", "capit", "the", "w399", "titl"]:
        (term,) = one.term_ids([word]).get(0, [None])
        if term is None:
            continue
        ids, scores = whole.postings.read(term)
        held = four.term_ids([word])  # one look-up: each shard's id of the term
        parts = [
            (
                shard.postings.read(held[rank][0])[0] + shard.first,
                shard.postings.read(held[rank][0])[1],
            )
            for rank, shard in enumerate(four.shards)
            if rank in held
        ]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), ids), word
        assert np.array_equal(np.concatenate([p[1] for p in parts]), scores), word
    vocabularies = [  # each shard's bm25s vocab: term -> the shard's id
        json.loads((s.directory / "index" / "bm25" / "vocab.index.json").read_text())
        for s in four.shards
    ]
    terms = sorted(set().union(*vocabularies) - {""})  # bm25s's "" is in every vocab
    held = four.term_ids(terms)  # the index's terms.table.npy, one look-up per term
    assert held == {
        rank: [vocabulary[t] for t in terms if t in vocabulary]
        for rank, vocabulary in enumerate(vocabularies)
    }
    some = four.term_ids(terms, shards=(1, 3))  # a scoped search's: only those shards
    assert some == {rank: held[rank] for rank in (1, 3)}
    assert four.term_ids(["notaword"]) == {} == four.term_ids(["notaword"], shards=(0,))
    assert _searches(four, corpus) == _searches(one, corpus)
    # a term of more than WIDE_TERM shards is read per shard wanted (an index of thousands)
    monkeypatch.setattr(index_module, "WIDE_TERM", 1)
    wide = CorpusIndex.open([corpus], IndexConfig(cache_dir=str(tmp_path / "four"), shards=4))
    for scope in [(1, 3), (0,), (2, 3), (0, 1, 2, 3)]:
        assert wide.term_ids(terms, shards=scope) == {r: held[r] for r in scope if r in held}
    assert wide.term_ids(terms) == held
    assert wide.term_ids(["notaword"], shards=(0,)) == {}
    assert not list(four.directory.glob("*/runs")) and not list(tmp_path.glob("four/*.build"))


def test_the_index_cli_cuts_one_shard_per_shard_mb(tmp_path):
    """`index CORPUS --shard-mb M` (the benchmarks' command) cuts a shard per M MiB of text and
    names the index as a run with `environment.index_shard_mb: M` would, so the run finds it."""
    corpus = _corpus(tmp_path / "corpus.jsonl")
    lines = corpus.read_text()
    copies = -(-(5 << 19) // len(lines))  # about 2.5 MiB: 3 shards of 1 MiB
    corpus.write_text(lines * copies)
    command = [sys.executable, "-m", "data_synthesis.environment", "index", str(corpus)]
    command += ["--cache-dir", str(tmp_path / "c"), "--workers", "1", "--shard-mb", "1"]
    stats = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    assert len(stats["shards"]) == 3
    config = IndexConfig(cache_dir=str(tmp_path / "c"), shard_bytes=1 << 20)
    index = CorpusIndex.open([corpus], config, log=pytest.fail)  # built already: no log
    assert len(index.shards) == 3 and len(index.term_ids(["river"])) == 3
    assert index.search("river capital")


def test_a_compressed_corpus_keeps_its_pages_in_the_index(tmp_path):
    """A compressed corpus file has no byte offset to read a page at: its read task keeps each
    page as a zstd frame in the shard (pages.zst), so searches and pages over a gzip file and a
    zstd file in 2 shards are the plain corpus's; a plain corpus stores no page."""
    import gzip

    import zstandard

    corpus = _corpus(tmp_path / "corpus.jsonl")
    lines = corpus.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "first.jsonl.gz", tmp_path / "second.jsonl.zst"
    first.write_bytes(gzip.compress(b"".join(lines[:150])))
    second.write_bytes(zstandard.ZstdCompressor().compress(b"".join(lines[150:])))
    (plain_a, plain_b) = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    plain_a.write_bytes(b"".join(lines[:150]))
    plain_b.write_bytes(b"".join(lines[150:]))
    plain = CorpusIndex.open(
        [plain_a, plain_b], IndexConfig(cache_dir=str(tmp_path / "p"), shards=2)
    )
    packed = CorpusIndex.open([first, second], IndexConfig(cache_dir=str(tmp_path / "z"), shards=2))
    assert _searches(packed, corpus) == _searches(plain, corpus)
    assert all((s.directory / "pages.zst").stat().st_size > 0 for s in packed.shards)
    assert all((s.directory / "pages.zst").stat().st_size == 0 for s in plain.shards)


def test_a_shard_in_which_no_document_starts_is_built_empty(tmp_path):
    """A shard owns the lines starting in its byte range: one long document (or a compressed
    file, read whole by the shard holding its first byte) can leave a shard without any. Its
    vocabulary is bm25s's empty token with no document count, and the build goes on (it read
    past the end of its count array until 2026-12-05)."""
    corpus = tmp_path / "one.jsonl"
    corpus.write_text(json.dumps({"id": "d0", "text": " ".join(WORDS * 5)}) + "\n")
    index = CorpusIndex.open([corpus], IndexConfig(cache_dir=str(tmp_path / "c"), shards=2))
    assert index.stats["documents"] == 1 and index.search("river capital")[0].doc_id == "d0"
    assert index.page("d0")["text"].startswith("w0 w1")


def test_a_killed_build_resumes_from_its_finished_shards(tmp_path, monkeypatch):
    """A build killed after two of three shards were read (one shard's read half-written) is
    resumed by the next open: the finished shards are not read again, the leftover is removed,
    and the index equals an uninterrupted build's."""
    from data_synthesis.environment import build as build_module

    corpus = _corpus(tmp_path / "corpus.jsonl")
    config = IndexConfig(cache_dir=str(tmp_path / "cache"), shards=3)
    directory = tmp_path / "cache" / build_module.corpus_fingerprint([corpus], config)
    killed = build_module.Build.of([corpus], directory, config)
    build_module.read_shard(killed, 0)
    build_module.read_shard(killed, 1)
    (killed.work / "s00002.tmp99-1").mkdir()  # what a kill -9 mid-read leaves
    (killed.work / "s00002.tmp99-1" / "passages.jsonl").write_text("half")
    reads = []
    real = build_module._read
    monkeypatch.setattr(build_module, "_read", lambda b, r, t: reads.append(r) or real(b, r, t))
    resumed = CorpusIndex.open([corpus], config, log=print)
    assert reads == [2]
    assert not killed.work.exists() and not list(directory.rglob("*.tmp*"))
    fresh = CorpusIndex.open([corpus], IndexConfig(cache_dir=str(tmp_path / "fresh")), log=print)
    assert _searches(resumed, corpus) == _searches(fresh, corpus)


@pytest.mark.parametrize("killed_after", ["_finish_facts", "_clean_up", "stats.json"])
def test_a_finish_killed_anywhere_is_resumed(tmp_path, monkeypatch, killed_after):
    """The finish step deletes what only the build needed: killed right after summing what it
    keeps, after deleting, or after writing stats.json, its rerun still publishes the index an
    uninterrupted build publishes (before, a kill after the clean-up left a build that could
    never finish: its counts were gone)."""
    from data_synthesis.environment import build as build_module

    corpus = _corpus(tmp_path / "corpus.jsonl")
    config = IndexConfig(cache_dir=str(tmp_path / "cache"), shards=2)
    directory = tmp_path / "cache" / build_module.corpus_fingerprint([corpus], config)
    build = build_module.Build.of([corpus], directory, config)
    for rank in range(2):
        build_module.read_shard(build, rank)
    build_module.count_terms(build)
    for rank in range(2):
        build_module.write_shard(build, rank)
    name = "write_json" if killed_after == "stats.json" else killed_after
    real = getattr(build_module, name)

    def killed(*args):
        done = real(*args)
        if name != "write_json" or Path(args[0]).name == "stats.json":
            raise KeyboardInterrupt  # stands for a kill -9 right here
        return done

    monkeypatch.setattr(build_module, name, killed)
    with pytest.raises(KeyboardInterrupt):
        build_module.finish(build)
    monkeypatch.undo()
    assert not (directory / "stats.json").exists()
    stats = build_module.finish(build)
    fresh = build_module.build_index([corpus], tmp_path / "fresh", config, log=print)
    fresh.pop("build_seconds")
    assert stats == fresh
    files = lambda root: sorted(  # noqa: E731
        (str(f.relative_to(root)), f.stat().st_size) for f in root.rglob("*") if f.is_file()
    )
    assert [f for f in files(directory) if f[0] != "stats.json"] == [
        f for f in files(tmp_path / "fresh") if f[0] != "stats.json"
    ]
    assert not build.work.exists()


def test_index_build_benchmark_reports_each_checkout_and_compares_their_files(tmp_path):
    """benchmarks/bench_index_build.py (the figures in docs/benchmarks.md) at 1 MB, with this
        checkout as the earlier one too: both builds reported, and the same files; and the build in 3
    shards by 2 datatrove workers."""
    repo = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(repo / "benchmarks/bench_index_build.py"), "--sizes-mb", "1"]
    command += ["--work", str(tmp_path), "--code", str(repo), "--shards", "3", "--workers", "2"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = re.findall(
        r"1 MB\s+(this|earlier)\s+([\d,]+) passages\s+([\d.]+) CPU s\s+peak RSS\s+([\d.]+) MB", out
    )
    assert [r[0] for r in rows] == ["this", "earlier"] and rows[0][1] == rows[1][1], out
    assert all(float(r[2]) > 0 and float(r[3]) > 50 for r in rows), out
    assert "same index files: yes" in out, out
    sharded = re.search(r"1 MB\s+3x2\s+([\d,]+) passages .* wall\s+([\d.]+) s", out)
    assert sharded and sharded[1] == rows[0][1], out


def test_index_build_benchmark_indexes_real_text(tmp_path):
    """--text-roots (the real-text figures in docs/benchmarks.md): a corpus of the text files
    under the given folders, cut at the size asked, is built (in a --work folder not yet made:
    a fresh machine's first run failed there)."""
    repo = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(repo / "benchmarks/bench_index_build.py"), "--sizes-mb", "1"]
    roots = [str(repo / name) for name in ("docs", "data_synthesis", "megatron_agentic", "tests")]
    command += ["--text-roots", *roots]
    out = subprocess.run(
        command + ["--work", str(tmp_path / "new")], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"1 MB\s+this\s+[1-9][\d,]* passages", out), out
    rows = [json.loads(line) for line in (tmp_path / "new" / "text_1mb.jsonl").open()]
    assert any(row["id"].endswith("docs/data_synthesis.md#0") for row in rows), rows[:3]
    assert 1e6 <= sum(len(row["text"].encode()) for row in rows) < 1e6 + 80_000


def test_an_index_of_many_shards_raises_the_open_files_limit(tmp_path):
    """Each shard keeps files open; a process under a low soft limit (here 40 files) still
    searches every shard of an 8-shard index, the index raising the limit toward the hard one."""
    corpus = _corpus(tmp_path / "corpus.jsonl")
    code = f"""
import resource
from data_synthesis.environment.index import CorpusIndex, IndexConfig
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (40, hard))
config = IndexConfig(cache_dir={str(tmp_path / "cache")!r}, shards=8)
index = CorpusIndex.open([{str(corpus)!r}], config, log=lambda _: None)
found = [index.search(word) for word in ("w1 river", "w2", "capital w3", "w5 w6 w7")]
pages = [index.page(f"d{{i}}") for i in range(0, 280, 9)]
print(len(index.shards), sum(map(len, found)), sum(p is not None for p in pages))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    counts, limit = done.stdout.split("\n")[:2]
    assert counts == "8 40 32" and int(limit) > 40, done.stdout


def test_a_task_keeps_a_bounded_number_of_shards_open(tmp_path, monkeypatch):
    """Shards are opened on first use and only the most recently used SHARDS_OPEN stay open:
    with 2 of 6 allowed, every search and page look-up gives what an index holding all six
    gives, while the process never holds more than two shards' files."""
    import os

    from data_synthesis.environment import index as index_module

    corpus = _corpus(tmp_path / "corpus.jsonl")
    config = IndexConfig(cache_dir=str(tmp_path / "cache"), shards=6)
    every = CorpusIndex.open([corpus], config, log=print)
    expected = _searches(every, corpus)
    assert every.shards.opened() == 6
    del every
    monkeypatch.setattr(index_module, "SHARDS_OPEN", 2)
    files = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    before = files()
    bounded = CorpusIndex.open([corpus], config, log=print)
    assert bounded.shards.opened() == 0  # nothing is opened before it is used
    most = 0
    for query in ("w1 river", "w2", "capital w3", "w5 w6 w7"):
        assert bounded.search(query) == bounded.search(query, shards=tuple(range(6)))
        most = max(most, bounded.shards.opened())
    assert _searches(bounded, corpus) == expected
    assert most == 2 and bounded.shards.opened() == 2
    assert files() - before <= 2 * 6 + 64  # two shards' files and the look-up tables'


def test_an_index_of_another_version_is_refused_by_name(tmp_path):
    """A task handed the directory of an index built by another version of this code (a run
    planned before an upgrade) stops with an error naming it and both versions; it searched
    that index with no term table before, finding nothing and saying nothing."""
    from data_synthesis.environment.build import INDEX_VERSION

    corpus = _corpus(tmp_path / "corpus.jsonl")
    built = CorpusIndex.open([corpus], IndexConfig(cache_dir=str(tmp_path / "c")), log=print)
    stats = built.directory / "stats.json"
    stats.write_text(json.dumps(dict(built.stats, version="bm25s-passages-v7")))
    with pytest.raises(
        ValueError, match=f"{built.directory}: .*-v7, this code reads {INDEX_VERSION}"
    ):
        CorpusIndex.open([corpus], built.config, directory=str(built.directory))
