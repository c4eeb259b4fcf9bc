"""Unit tests (single process, seconds) of the offline agent environment: the real bm25s index
over a small corpus, visit, the python sandbox (timeout, no network, memory limit), the tool
registry (validation, custom tools declared once and executed), and the grounded planning check."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from data_synthesis.environment import Environment, EnvironmentConfig, ToolRegistry
from data_synthesis.environment.grounding import agreement, ground_plan, grounding_key
from data_synthesis.environment.index import CorpusIndex, IndexConfig, corpus_fingerprint
from data_synthesis.environment.sandbox import _unshare_prefix, run_python

REPO = Path(__file__).resolve().parents[2]
DOCS = [
    {
        "id": "d-vienna",
        "title": "Vienna",
        "url": "https://example.org/vienna",
        "text": "Vienna is the capital of Austria. The Danube flows through Vienna.",
    },
    {
        "id": "d-lyon",
        "title": "Lyon",
        "url": "https://example.org/lyon",
        "text": "Lyon lies where the Rhone and the Saone meet. Lyon is known for its cuisine.",
    },
    {
        "id": "d-tokyo",
        "title": "Tokyo",
        "url": "https://example.org/tokyo",
        "text": "Tokyo is the capital of Japan. Tokyo Tower is 333 metres tall.",
    },
]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    return path


@pytest.fixture
def env(corpus, tmp_path) -> Environment:
    config = EnvironmentConfig(corpora=[str(corpus)], cache_dir=str(tmp_path / "cache"))
    return Environment(config=config, log=lambda _: None)


def test_search_finds_the_right_passage_with_title_url_snippet(env):
    result = env.execute({"name": "search", "arguments": {"query": ["how tall is Tokyo Tower"]}})
    assert result.ok
    first = result.text.split("\n1. ", 1)[1].splitlines()
    assert first[0] == "[Tokyo](https://example.org/tokyo)"
    assert "333 metres" in first[1]
    two = env.execute({"name": "search", "arguments": {"query": ["Rhone", "capital of Austria"]}})
    blocks = two.text.split("=======")
    assert "1. [Lyon]" in blocks[0] and "1. [Vienna]" in blocks[1]
    none = env.execute({"name": "search", "arguments": {"query": ["zebra xylophone"]}})
    assert "No results" in none.text


def test_index_is_built_once_per_corpus_and_rebuilt_when_it_changes(corpus, tmp_path):
    config = IndexConfig(cache_dir=str(tmp_path / "cache"))
    logs = []
    first = CorpusIndex.open([corpus], config, log=logs.append)
    again = CorpusIndex.open([corpus], config, log=logs.append)
    assert again.directory == first.directory and len(logs) == 1  # reused, not rebuilt
    assert first.stats["documents"] == 3 and first.stats["index_bytes"] > 0
    with corpus.open("a") as handle:
        handle.write(json.dumps({"id": "d-x", "text": "Oslo is the capital of Norway."}) + "\n")
    changed = CorpusIndex.open([corpus], config, log=logs.append)
    assert changed.directory != first.directory and len(logs) == 2
    assert changed.search("capital of Norway")[0].doc_id == "d-x"


def test_an_index_is_named_by_its_corpus_files_size_time_and_edges(tmp_path):
    """Naming the index reads a corpus file's first and last 64 KiB, not every byte (a SLURM
    submission names it before anything runs: 1 TB would be read on the submitting machine);
    an edit that keeps the size still gets a new index through the modification time, and a
    copy that keeps the time shares it."""
    config = IndexConfig(cache_dir=str(tmp_path / "cache"))
    path = tmp_path / "big.jsonl"
    filler = json.dumps({"id": "f", "text": "filler " * 200}) + "\n"
    path.write_text(filler * (3 * 2**20 // len(filler)))  # 3 MiB, nearly all unread
    named = corpus_fingerprint([path], config)
    middle = path.stat().st_size // 2
    times = (path.stat().st_atime_ns, path.stat().st_mtime_ns)
    with path.open("r+b") as handle:  # the same size, another byte in the middle MiB
        handle.seek(middle)
        handle.write(b"F" if handle.read(1) != b"F" else b"G")
    os.utime(path, ns=times)
    assert corpus_fingerprint([path], IndexConfig(cache_dir=str(tmp_path / "c2"))) == named
    os.utime(path, ns=(times[0], times[1] + 10**9))  # as any write leaves it
    assert corpus_fingerprint([path], config) != named
    copy = tmp_path / "elsewhere" / "big.jsonl"
    copy.parent.mkdir()
    shutil.copy2(path, copy)  # keeps the modification time
    assert corpus_fingerprint([copy], config) == corpus_fingerprint([path], config)


def test_long_documents_are_cut_into_passages(tmp_path):
    words = " ".join(f"filler{i}" for i in range(300))
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"id": "long", "text": f"{words} needle sentence here."}) + "\n")
    index = CorpusIndex.open([path], IndexConfig(cache_dir=str(tmp_path / "c")), log=print)
    assert index.stats["passages"] > 1
    hit = index.search("needle")[0]
    assert hit.doc_id == "long" and "needle" in hit.text and "filler0 " not in hit.text


def test_bad_corpus_line_is_named_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(DOCS[0]) + "\n" + json.dumps({"id": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: a document needs a string 'text'"):
        CorpusIndex.open([path], IndexConfig(cache_dir=str(tmp_path / "c")))


@pytest.fixture(scope="module")
def common_words_index(tmp_path_factory):
    """3,000 passages of five common words (long postings) and 400 rare names."""
    import random

    rng = random.Random(0)
    common = ["city", "river", "museum", "bridge", "market"]
    rare = [f"name{i}" for i in range(400)]
    docs = []
    for i in range(3000):
        words = rng.choices(common, k=rng.randint(3, 12)) + rng.choices(rare, k=rng.randint(0, 2))
        docs.append({"id": f"d{i}", "title": f"t{i % 97}", "text": " ".join(words)})
    tmp = tmp_path_factory.mktemp("common")
    path = tmp / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    index = CorpusIndex.open([path], IndexConfig(cache_dir=str(tmp / "c")), log=lambda _: None)
    return index, common, rare


def _exact_top_k_checked(index, terms: list[str], retriever) -> bool:
    """Assert the search's top 10 for some terms is bm25s's (every passage scored), ties lowest
    passage first; False when none of the terms is indexed."""
    import numpy as np

    shard = index.shards[0]
    terms = index._analyse(" ".join(terms) + " notaword")
    ids = index.term_ids(terms).get(0, [])  # the term table gives bm25s's own term ids
    assert ids == retriever.get_tokens_ids(terms)
    if not ids:
        return False
    got = list(zip(*shard.top_k(ids, 10)))
    full = retriever.get_scores(terms)  # every passage scored
    best = np.sort(full[full > 0])[::-1][:10]
    assert np.allclose([score for _, score in got], best, rtol=1e-5)
    assert np.allclose(full[[passage for passage, _ in got]], best, rtol=1e-5)
    exact = np.zeros(len(full))  # the same sums in the same order, then ties by passage
    spans = {term: shard.postings.span(term) for term in ids}
    for term in sorted(ids, key=lambda term: spans[term][1] - spans[term][0]):  # rarest first
        passages, scores = shard.postings.read(term)
        exact[passages] += scores
    exact = exact.astype(np.float32)
    ranked = np.lexsort((np.arange(len(exact)), -exact))[:10]
    assert [passage for passage, _ in got] == ranked[exact[ranked] > 0].tolist()
    return True


@pytest.mark.parametrize("block, per_range", [(128, 1 << 19), (4, 300), (16, 2000)])
def test_search_top_k_equals_scoring_every_passage(
    common_words_index, block, per_range, monkeypatch
):
    """MaxScore skips reading common terms' postings whole; its top-k must still be exactly
    what scoring every passage gives (bm25s's get_scores): the same scores, each passage's
    own, and of tied passages the lowest first (many passages tie). With small blocks and
    ranges, the common terms are looked up block by block and passages searched range by range
    (the paths long lists take at scale; these queries fit one range of the default)."""
    import random

    import bm25s

    from data_synthesis.environment import postings

    monkeypatch.setattr(postings, "BLOCK", block)
    monkeypatch.setattr(postings, "RANGE_POSTINGS", per_range)
    index, common, rare = common_words_index
    index.shards[0].postings._fences.clear()
    retriever = bm25s.BM25.load(index.shards[0].directory / "index" / "bm25", mmap=True)
    rng = random.Random(block + per_range)
    compared = 0
    for _ in range(300):
        terms = rng.sample(common, rng.randint(1, 5)) + rng.sample(rare, rng.randint(0, 3))
        compared += _exact_top_k_checked(index, terms, retriever)
    assert compared > 250


def test_search_top_k_is_exact_over_copies_of_passages(tmp_path):
    """A corpus of 40 copies of 30 documents (the synthesis benchmark's shape: every passage
    repeated, scores tied across the copies): the threshold MaxScore learns by scoring the best
    candidates in full is exactly the k-th best score, so any error in it changes the results."""
    import random

    import bm25s

    rng = random.Random(5)
    vocabulary = [f"word{i}" for i in range(60)]
    base = [" ".join(rng.choices(vocabulary, k=rng.randint(5, 40))) for _ in range(30)]
    docs = [
        {"id": f"c{copy}-d{i}", "title": f"topic{i % 7}", "text": text}
        for copy in range(40)
        for i, text in enumerate(base)
    ]
    path = tmp_path / "copies.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    index = CorpusIndex.open([path], IndexConfig(cache_dir=str(tmp_path / "c")), log=print)
    retriever = bm25s.BM25.load(index.shards[0].directory / "index" / "bm25", mmap=True)
    compared = 0
    for _ in range(200):
        text = rng.choice(base).split()
        start = rng.randrange(len(text))
        terms = text[start : start + rng.randint(1, 6)] + [f"topic{rng.randrange(7)}"]
        compared += _exact_top_k_checked(index, terms, retriever)
    assert compared == 200


@pytest.mark.parametrize("block, per_range", [(128, 1 << 19), (8, 5000)])
def test_search_top_k_is_exact_on_zipf_distributed_words(tmp_path, block, per_range, monkeypatch):
    """Words drawn by Zipf's law, as in real text: each query mixes terms of a few postings
    with terms of thousands, so candidates differ in how many terms they summed before their
    look-ups. The top-k must still be exactly what scoring every passage gives."""
    import random

    import bm25s

    from data_synthesis.environment import postings

    monkeypatch.setattr(postings, "BLOCK", block)
    monkeypatch.setattr(postings, "RANGE_POSTINGS", per_range)
    rng = random.Random(block)
    vocabulary = [f"w{i}x" for i in range(3000)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    docs = [
        {
            "id": f"d{i}",
            "title": "",
            "text": " ".join(rng.choices(vocabulary, weights, k=rng.randint(3, 60))),
        }
        for i in range(4000)
    ]
    path = tmp_path / "zipf.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    index = CorpusIndex.open([path], IndexConfig(cache_dir=str(tmp_path / "c")), log=lambda _: None)
    retriever = bm25s.BM25.load(index.shards[0].directory / "index" / "bm25", mmap=True)
    compared = 0
    for _ in range(250):
        terms = rng.choices(vocabulary, weights, k=rng.randint(1, 9))
        compared += _exact_top_k_checked(index, terms, retriever)
    assert compared == 250


def test_a_repeated_query_is_answered_from_the_results_kept(common_words_index, monkeypatch):
    """A query whose analysed terms were searched before (with the same k) is not searched
    again, and gets the same hits; another k is searched anew."""
    index, _, _ = common_words_index
    index._results.clear()
    calls, top_k = [], index._top_k
    monkeypatch.setattr(
        index, "_top_k", lambda terms, k, shards: calls.append(k) or top_k(terms, k, shards)
    )
    first = index.search("city river name3")
    assert first and index.search("City,  river NAME3") == first
    assert [hit.doc_id for hit in index.search("city river name3", k=5)] == [
        hit.doc_id for hit in first[:5]
    ]
    assert calls == [10, 5]


@pytest.fixture(scope="module")
def sharded_corpus(tmp_path_factory):
    """1,200 one-passage documents of common words and rare names, indexed in 4 shards."""
    import random

    rng = random.Random(1)
    common = ["city", "river", "museum", "bridge", "market"]
    docs = []
    for i in range(1200):
        words = rng.choices(common, k=rng.randint(3, 12)) + [f"name{rng.randrange(300)}"]
        docs.append({"id": f"d{i}", "url": f"https://example.org/{i}", "text": " ".join(words)})
    docs[-1]["text"] = "The lighthouse keeper counted seventeen grey herons on the pier at dawn."
    tmp = tmp_path_factory.mktemp("sharded")
    path = tmp / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    config = IndexConfig(cache_dir=str(tmp / "c"), shards=4)
    index = CorpusIndex.open([path], config, log=lambda _: None)
    assert len(index.shards) == 4
    return path, index, common


def test_a_search_over_some_shards_is_the_exact_top_k_of_their_passages(sharded_corpus):
    """search(..., shards=) ranks only those shards' passages, with the whole corpus's
    statistics: its top 10 is the full ranking's, filtered to those shards, ties included."""
    import random

    _, index, common = sharded_corpus
    shard_of = {f"d{i}": index._locate(f"d{i}")[0] for i in range(1200)}
    rng = random.Random(2)
    for _ in range(40):
        query = " ".join(rng.sample(common, rng.randint(1, 3)) + [f"name{rng.randrange(300)}"])
        ranking = [(hit.doc_id, hit.score) for hit in index.search(query, k=1200)]
        for shards in [(1,), (0, 2), (1, 2, 3)]:
            got = [(hit.doc_id, hit.score) for hit in index.search(query, 10, shards)]
            assert got == [hit for hit in ranking if shard_of[hit[0]] in shards][:10]
            assert len(got) == 10


def test_the_last_passages_read_are_kept_and_no_more(sharded_corpus, monkeypatch):
    """CorpusIndex.passage keeps the PASSAGES_CACHED passages read last: one read again is not
    read from its shard, one dropped is read again, and every passage is its shard's."""
    from data_synthesis.environment import index as index_module

    _, opened, _ = sharded_corpus
    monkeypatch.setattr(index_module, "PASSAGES_CACHED", 8)
    index = CorpusIndex(opened.directory, opened.paths, opened.config)
    reads = []
    for shard in index.shards:
        read = shard.passage
        monkeypatch.setattr(shard, "passage", lambda i, read=read: reads.append(i) or read(i))
    ids = [0, 1, 2, 299, 300, 301, 900, 1199]  # spread over the index
    first = [index.passage(i) for i in ids]
    assert len(reads) == 8 and [index.passage(i) for i in ids] == first and len(reads) == 8
    index.passage(5)  # a ninth: the oldest (0) is dropped
    assert index.passage(1) == first[1] and len(reads) == 9
    assert index.passage(0) == first[0] and len(reads) == 10
    assert first == [opened._read_passage(i) for i in ids]


def test_a_shard_that_cannot_beat_the_floor_reads_no_postings(sharded_corpus):
    """A shard whose query terms' best scores together cannot beat an earlier shard's k-th
    best (`floor`) is passed over before any posting is read; just above its bound, it is
    searched and gives the passages above the floor."""
    _, index, _ = sharded_corpus
    shard = index.shards[2]
    ids = index.term_ids(index._analyse("city river name7"))[2]
    postings = shard.postings
    bound = sum(postings.best(term) for term in ids)
    all_passages, all_scores = shard.top_k(ids, 10)
    reads, read = [], postings.ids.read
    postings.ids.read = lambda *span: reads.append(span) or read(*span)
    try:
        passages, scores = shard.top_k(ids, 10, floor=bound * 1.001)
        assert len(passages) == 0 and not reads
        floor = float(all_scores[0]) * 0.999
        passages, scores = shard.top_k(ids, 10, floor=floor)
        assert reads and list(passages) == [
            p for p, s in zip(all_passages, all_scores) if s > floor
        ]
    finally:
        del postings.ids.read


def test_a_page_is_found_in_its_own_shard_alone(sharded_corpus):
    """pages.table.npy names a page's shard: locating it reads that table and one shard's
    docs.table.npy, not every shard's (the rows agree with a scan of the shards' docs.jsonl)."""
    _, index, _ = sharded_corpus
    rows = {}
    for rank, shard in enumerate(index.shards):
        for line in (shard.directory / "docs.jsonl").read_text().splitlines():
            row = json.loads(line)
            rows[row["id"]] = rows[row["url"]] = (rank, row)
    assert len({rank for rank, _ in rows.values()}) == 4
    read, get = [], index._tables.get
    index._tables.get = lambda path, key: read.append(path.name) or get(path, key)  # noqa: E731
    try:
        for i in range(0, 1200, 7):
            for key in (f"d{i}", f"https://example.org/{i}"):
                index._located.clear()
                read.clear()
                assert index._locate(key) == rows[key]
                assert read == ["pages.table.npy", "docs.table.npy"], key
        index._located.clear()
        assert index._locate("https://example.org/none") is None and index.page("nope") is None
    finally:
        del index._tables.get


def test_a_questions_searches_cover_its_documents_shards_and_drawn_ones(sharded_corpus, tmp_path):
    """With search_shards, a question's searches (a plan's check, an agent's calls) cover the
    shards of its source documents and others drawn by its id, `search_shards` in all; its
    evidence stays findable. Without a scope, with search_shards 0, or with at least as many as
    the index has, every shard."""
    from data_synthesis.agent.loop import AgentConfig
    from data_synthesis.agent.rollouts import rollout
    from data_synthesis.environment.executor import Scope

    with pytest.raises(ValueError, match="environment.search_shards: an integer >= 0, got -1"):
        EnvironmentConfig.from_dict({"search_shards": -1})
    with pytest.raises(ValueError, match="environment.index_shard_mb: an integer > 0, got 0"):
        EnvironmentConfig.from_dict({"index_shard_mb": 0})
    path, index, _ = sharded_corpus
    shard_of = {f"https://example.org/{i}": index._locate(f"d{i}")[0] for i in range(1200)}
    assert index.scope("q", ["d5"], 0) is None and index.scope("q", ["d5"], 4) is None
    own = shard_of["https://example.org/5"]
    scopes = {index.scope(f"q{i}", ["d5"], 2) for i in range(40)}
    assert all(len(s) == 2 and own in s for s in scopes) and len(scopes) == 3  # drawn by id
    assert index.scope("q7", ["d5"], 2) == index.scope("q7", ["d5"], 2)
    index._located.clear()
    found, find = [], index._find
    index._find = lambda key: found.append(key) or find(key)  # noqa: E731 - count the look-ups
    index.scope("q8", ["d5", "d6"], 2), index.scope("q9", ["d6"], 2), index.page("d5")
    assert found == ["d5", "d6"]  # a document is looked up in the shards once, then kept
    del index._find
    spread = [f"d{i}" for i in range(0, 1200, 150)]  # documents in every shard
    assert index.scope("q", spread, 2) == (0, 1, 2, 3) and len(index.scope("q", ["nope"], 2)) == 2

    text = json.loads(path.read_text().splitlines()[5])["text"]
    call = {"name": "search", "arguments": {"query": [text]}}
    urls = lambda result: re.findall(r"\]\((https://example.org/\d+)\)", result.text)  # noqa: E731
    config = EnvironmentConfig(corpora=[str(path)], cache_dir=index.config.cache_dir)
    config.index_shards, config.search_shards = 4, 4  # an index of 4 shards is searched whole
    whole, told = Environment(config=config, log=lambda _: None), []
    question = {"id": "q1", "question": text, "source_docs": ["d5"], "supporting": []}
    assert whole.execute(call, Scope.of(question)).text == whole.execute(call).text
    config.search_shards = 1
    env = Environment(config=config, log=told.append)
    key = next(f"q{i}" for i in range(99) if index.scope(f"q{i}", [], 1) != (own,))
    question = {"id": key, "question": text, "source_docs": ["d5"], "supporting": []}
    scoped = urls(env.execute(call, Scope.of(question)))
    assert scoped[0] == "https://example.org/5" and {shard_of[u] for u in scoped} == {own}
    assert len({shard_of[u] for u in urls(env.execute(call))}) > 1  # no scope: every shard
    env.execute(call, Scope.of(question))
    assert told == [
        "environment: a question's searches cover 1 of the index's 4 shards "
        "(environment.search_shards; 0: every shard)"
    ]  # said once

    class Searcher:  # a scripted policy: one search, then an answer
        def replies(self, states, turn):
            step = {"thought": "look", "tool": "search", "arguments": call["arguments"]}
            return [step if turn == 0 else {"answer": "x"} for _ in states]

    record = rollout([question | {"answer": "x"}], Searcher(), env, AgentConfig())[0]
    assert {
        shard_of[u] for u in re.findall(r"\]\((https://[^)]+)\)", record["steps"][0]["response"])
    } == {own}
    assert shard_of["https://example.org/1199"] != own
    elsewhere = json.loads(path.read_text().splitlines()[1199])["text"]  # its own words
    check = {"name": "search", "arguments": {"query": ["lighthouse keeper herons pier"]}}
    question["supporting"] = [{"sentence": elsewhere}]  # evidence outside the question's shards
    assert not ground_plan(check, question, env)["grounded"]
    config.search_shards = 0
    assert len({shard_of[u] for u in urls(env.execute(call, Scope.of(question)))}) > 1
    assert ground_plan(check, question, env)["grounded"]


def test_postings_look_up_scores_block_by_block(common_words_index, monkeypatch):
    """A look-up reads only the blocks its fence names; the scores equal the whole list's,
    and a passage without the term (before, between or after its postings) scores 0."""
    import numpy as np

    from data_synthesis.environment import postings

    monkeypatch.setattr(postings, "BLOCK", 4)
    index, _, _ = common_words_index
    store, reads = index.shards[0].postings, []
    store._fences.clear()
    read = store.ids.read
    monkeypatch.setattr(store.ids, "read", lambda a, b: reads.append(b - a) or read(a, b))
    term = index.term_ids(["river"])[0][0]
    ids, scores = store.read(term)
    assert len(ids) > 1000
    rng = np.random.default_rng(0)
    for size in (1, 3, 20):
        passages = np.unique(rng.choice(int(ids[-1]) + 5, size, replace=False))
        store.lookup(term, passages[:1])  # builds the term's fence (one whole read)
        reads.clear()
        got = store.lookup(term, passages)
        expected = np.array([scores[ids == p][0] if p in ids else 0.0 for p in passages])
        assert np.array_equal(got, expected.astype(np.float64))
        assert 0 < sum(reads) <= size * 4 < len(ids)
        assert 0 < got.sum() and (got == 0).sum() == len(set(passages) - set(ids.tolist()))


def test_search_benchmark_reports_cpu_and_memory_and_the_hits(tmp_path):
    """benchmarks/bench_search.py (the figures in docs/benchmarks.md) on the bundled corpus."""
    corpus = REPO / "data_synthesis/data/corpus.jsonl"
    hits = tmp_path / "hits.json"
    command = [sys.executable, str(REPO / "benchmarks/bench_search.py"), "--corpus", str(corpus)]
    command += ["--cache-dir", str(tmp_path / "c"), "--queries", "40", "--hits", str(hits)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["queries"] == 40 and row["passages"] > 300 and row["cpu_ms_per_search"] > 0
    assert row["shards"] == 1 and 0 <= row["index_open_mb"] < 50
    results = json.loads(hits.read_text())
    assert len(results) == 40 and sum(len(r) for r in results) > 40
    command += ["--code", str(REPO)]  # a checkout to measure (here the same one)
    again = subprocess.run(command, capture_output=True, text=True, check=True)
    assert json.loads(again.stdout.strip().splitlines()[-1])["code"] == str(REPO)
    assert json.loads(hits.read_text()) == results
    command += ["--shards", "3", "--pages", "50"]  # another layout: its own index, same hits
    sharded = subprocess.run(command, capture_output=True, text=True, check=True)
    row = json.loads(sharded.stdout.strip().splitlines()[-1])
    assert (
        row["shards"] == 3 and row["shards_open"] == 3 and json.loads(hits.read_text()) == results
    )
    assert row["pages"] == 100 and row["pages_found"] == 100 and row["cpu_us_per_page"] > 0
    command += ["--shards-open", "1"]  # shards reopened as the searches need them: same hits
    bounded = subprocess.run(command, capture_output=True, text=True, check=True)
    assert json.loads(bounded.stdout.strip().splitlines()[-1])["shards_open"] == 1
    assert json.loads(hits.read_text()) == results
    command += ["--scope", "1"]  # each query on 1 of the 3 shards, drawn per query
    scoped = subprocess.run(command, capture_output=True, text=True, check=True)
    assert json.loads(scoped.stdout.strip().splitlines()[-1])["scope"] == 1
    narrowed = json.loads(hits.read_text())
    assert narrowed != results and sum(map(len, narrowed)) < sum(map(len, results))


def test_search_benchmark_records_the_pipelines_searches_and_replays_them(tmp_path):
    """bench_search.py --record runs the pipeline (40 bundled documents) logging each search
    it makes, repeats included, with the stage that made it (only planning and has search);
    --replay searches exactly those queries, in order."""
    corpus = tmp_path / "corpus.jsonl"
    lines = (REPO / "data_synthesis/data/corpus.jsonl").read_text().splitlines(keepends=True)
    corpus.write_text("".join(lines[:40]))
    log, hits = tmp_path / "queries.tsv", tmp_path / "hits.json"
    command = [sys.executable, str(REPO / "benchmarks/bench_search.py"), "--corpus", str(corpus)]
    command += ["--cache-dir", str(tmp_path / "c")]
    recorded = subprocess.run(
        command + ["--record", str(log)], capture_output=True, text=True, check=True
    )
    asked = [line.split("\t") for line in log.read_text().splitlines()]
    assert len(asked) > 100 and all(len(row) == 3 and row[0] and int(row[1]) for row in asked)
    assert len({tuple(row) for row in asked}) < len(asked)  # the stages repeat queries
    made = json.loads(recorded.stdout.strip().splitlines()[-1])
    by_stage = {stage: sum(row[2] == stage for row in asked) for stage in ("planning", "has")}
    assert made["searches"] == by_stage and min(by_stage.values()) > 0  # no search left unnamed
    assert made["per_question"]["planning"] == round(by_stage["planning"] / made["questions"], 2)
    done = subprocess.run(
        command + ["--replay", str(log), "--hits", str(hits)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1])["queries"] == len(asked)
    assert len(json.loads(hits.read_text())) == len(asked)


def test_visit_returns_the_page_and_says_when_it_is_missing(env):
    call = {"name": "visit", "arguments": {"url": ["https://example.org/lyon"], "goal": "rivers"}}
    result = env.execute(call)
    assert result.ok and DOCS[1]["text"] in result.text
    missing = env.execute({"name": "visit", "arguments": {"url": ["nope"], "goal": "x"}})
    assert not missing.ok and "could not be found" in missing.text


def test_hidden_documents_never_reach_a_tool_response(corpus, tmp_path):
    hidden = tmp_path / "hidden.txt"
    hidden.write_text("d-tokyo\n")
    config = EnvironmentConfig(
        corpora=[str(corpus)], cache_dir=str(tmp_path / "c"), exclude_docs_file=str(hidden)
    )
    env = Environment(config=config, log=lambda _: None)
    result = env.execute({"name": "search", "arguments": {"query": ["Tokyo Tower"]}})
    assert "333 metres" not in result.text and "example.org/tokyo" not in result.text
    call = {"name": "visit", "arguments": {"url": ["https://example.org/tokyo"], "goal": "x"}}
    assert not env.execute(call).ok
    # the evaluation split's rule instead of a list: decided per id, nothing held per document
    from data_synthesis.eval.heldout import HeldoutRule, heldout_doc

    held = lambda s: heldout_doc("d-tokyo", 0.5, s) and not heldout_doc("d-lyon", 0.5, s)  # noqa: E731
    seed = next(s for s in range(400) if held(s))
    rule = HeldoutRule(0.5, seed)
    assert "d-tokyo" in rule and "d-tokyo#c2" in rule and "d-lyon" not in rule
    config.exclude_docs_file = None
    ruled = Environment(config=config, log=lambda _: None, heldout=rule)
    result = ruled.execute({"name": "search", "arguments": {"query": ["Tokyo Tower"]}})
    assert "333 metres" not in result.text and "example.org/tokyo" not in result.text
    assert not ruled.execute(call).ok
    lyon = {"name": "visit", "arguments": {"url": ["https://example.org/lyon"], "goal": "x"}}
    assert ruled.execute(lyon).ok  # a url is never hashed as if it were an id


def test_python_runs_code_and_truncates_output():
    result = run_python("<code>print(sum(range(10)))</code>")
    assert result.ok and result.output.strip() == "45"
    long = run_python("print('x' * 5000)", max_output_chars=100)
    assert len(long.output) < 200 and "truncated" in long.output


def test_python_times_out():
    result = run_python("while True:\n    pass", timeout_s=1.5)
    assert not result.ok and result.error == "timeout after 1.5 s"


def test_python_has_a_memory_limit():
    result = run_python("x = bytearray(3 * 1024**3)", memory_mb=256)
    assert not result.ok and result.error == "memory limit"


def test_python_cannot_reach_the_network():
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        "s.settimeout(3)\n"
        "print('connected', s.connect_ex(('1.1.1.1', 80)) == 0)\n"
    )
    result = run_python(code, timeout_s=10)
    assert not result.ok and "connected" not in result.output
    assert "network and subprocesses are disabled" in result.output
    spawned = run_python("import subprocess; subprocess.run(['curl', 'http://1.1.1.1'])")
    assert not spawned.ok and "disabled" in spawned.output


@pytest.mark.skipif(not _unshare_prefix(), reason="no network namespaces on this machine")
def test_the_network_namespace_alone_has_no_route_out():
    probe = (
        "import socket; s=socket.socket(); s.settimeout(3); print(s.connect_ex(('1.1.1.1', 80)))"
    )
    done = subprocess.run(
        [*_unshare_prefix(), sys.executable, "-c", probe], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() != "0"  # ENETUNREACH, not connected


def test_registry_validates_calls_with_reasons():
    registry = ToolRegistry.from_config(None)
    assert registry.names == ["search", "visit", "python"]
    assert registry.validate_call({"name": "search", "arguments": {"query": ["x"]}}) is None
    assert registry.validate_call({"name": "sql", "arguments": {}}).startswith("unknown tool")
    bad = registry.validate_call({"name": "search", "arguments": {"query": "x"}})
    assert bad.startswith("invalid arguments: search.query")
    assert registry.validate_call({"name": "visit", "arguments": {"url": ["u"]}}).endswith(
        "'goal' is a required property"
    )
    assert registry.validate_call("search").startswith("malformed call")
    schema = registry.json_schema_for_call()
    jsonschema.validate({"name": "python", "arguments": {"code": "print(1)"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "python", "arguments": {}}, schema)


def test_custom_tools_declared_once_are_prompted_validated_and_executed(tmp_path):
    registry = ToolRegistry.from_config(REPO / "examples/custom_tools/tools.yaml")
    assert "sql_query" in registry.prompt_block() and "wiki_search" in registry.prompt_block()
    assert registry.validate_call({"name": "sql_query", "arguments": {}}).startswith("invalid")
    env = Environment(registry, EnvironmentConfig(cache_dir=str(tmp_path / "c")), log=print)
    sql = "SELECT SUM(revenue_eur) FROM orders WHERE region = 'EMEA'"
    result = env.execute({"name": "sql_query", "arguments": {"sql": sql}})
    assert result.ok and "6900000" in result.text
    wiki = env.execute({"name": "wiki_search", "arguments": {"query": ["GPU quota"]}})
    assert "1. [GPU cluster quotas](wiki://eng/gpu-quotas)" in wiki.text


def test_a_command_tool_gets_its_argument_on_stdin(tmp_path):
    if not shutil.which("wc"):
        pytest.skip("no wc")
    tools = tmp_path / "tools.yaml"
    tools.write_text(
        "tools:\n  - name: word_count\n    description: Count words.\n"
        "    parameters: {type: object, properties: {text: {type: string}}, required: [text]}\n"
        "    run: {command: [wc, -w], stdin: text}\n  - name: undeclared_run\n"
        "    description: Listed for prompts only.\n"
    )
    env = Environment(ToolRegistry.from_config(tools), EnvironmentConfig(cache_dir=str(tmp_path)))
    assert env.execute({"name": "word_count", "arguments": {"text": "a b c"}}).text == "3"
    idle = env.execute({"name": "undeclared_run", "arguments": {}})
    assert not idle.ok and "no implementation" in idle.error


def test_registry_config_errors_name_the_tool(tmp_path):
    with pytest.raises(ValueError, match=r"tools\[0\] \(x\): a custom tool needs a `description`"):
        ToolRegistry.from_config([{"name": "x"}])
    with pytest.raises(ValueError, match=r"run.python: expected 'package.module:function'"):
        ToolRegistry.from_config([{"name": "y", "description": "d", "run": {"python": "mod"}}])


def test_grounded_planning_check_and_its_agreement_with_the_judge(env):
    question = {
        "question": "What is the capital of the country whose capital has the Danube?",
        "supporting": [
            {
                "entity_name": "Vienna",
                "sentence": "Vienna is the capital of Austria.",
                "value": {"text": "Austria"},
            }
        ],
    }
    good = ground_plan({"name": "search", "arguments": {"query": ["Danube Vienna"]}}, question, env)
    assert good["executed"] and good["grounded"] and good["supporting_found"] == 1
    bad = ground_plan({"name": "search", "arguments": {"query": ["Rhone cuisine"]}}, question, env)
    assert bad["executed"] and not bad["grounded"]
    absent = "Graz hosts the Styriarte festival every summer."  # in no page of the corpus
    echo = {"name": "search", "arguments": {"query": [absent]}}
    assert not ground_plan(echo, {"supporting": [{"sentence": absent}]}, env)["grounded"]
    assert not ground_plan(None, question, env)["executed"]
    counts = {grounding_key(True, True): 6, grounding_key(False, False): 2}
    counts[grounding_key(True, False)] = 2
    stats = agreement(counts)
    assert stats["n"] == 10 and stats["agreement"] == 0.8
    assert stats["cohen_kappa"] == pytest.approx(0.24 / 0.44, abs=1e-3)


def test_visit_with_an_llm_summarises_the_page_toward_the_goal(corpus, tmp_path):
    class Reader:  # a stand-in model: quotes the sentence of the page that names the goal's word
        prompts: list = []

        def generate(self, prompts, seed, schema=None, stop=None):
            self.prompts += prompts
            page = prompts[0][0]["content"].split("):\n", 1)[1]
            return [next(s for s in page.split(". ") if "Rhone" in s)]

    reader = Reader()
    config = EnvironmentConfig(corpora=[str(corpus)], cache_dir=str(tmp_path / "c"))
    env = Environment(config=config, llm=reader, log=lambda _: None)
    call = {"name": "visit", "arguments": {"url": ["https://example.org/lyon"], "goal": "Rhone"}}
    result = env.execute(call)
    assert "for the goal 'Rhone'" in result.text and "Lyon lies where the Rhone" in result.text
    assert "cuisine" not in result.text  # the summary, not the page
    assert DOCS[1]["text"] in reader.prompts[0][0]["content"]  # the model read the whole page


def test_a_task_opens_the_index_named_when_the_run_was_planned(corpus, tmp_path):
    """The run names each index once, when it is planned, and its tasks open it there: a task
    neither stats nor identifies the corpus files (100,000 of each per task for 1 TB in 10 MB
    files). Here the corpus is gone when the task opens the index, and its searches still
    work, from the index alone."""
    config = EnvironmentConfig(corpora=[str(tmp_path / "moved.jsonl")], cache_dir=str(tmp_path))
    built = CorpusIndex.open([corpus], config.index_config(), log=lambda _: None)
    named = {(str(tmp_path / "moved.jsonl"),): str(built.directory)}
    env = Environment(config=config, log=lambda _: None, named=named)
    found = env.search(["Danube"])
    assert found.ok and "Danube" in found.text
    with pytest.raises(FileNotFoundError, match="moved.jsonl"):
        Environment(config=config, log=lambda _: None).search(["Danube"])


def test_index_shards_follow_the_text_of_compressed_corpora(tmp_path):
    """An index shard holds `shard_bytes` of text: a zstd corpus (several times smaller on
    disk) gets the plain corpus's shard count, not a fraction of it."""
    import zstandard

    from data_synthesis.__main__ import BUNDLED_CORPUS as corpus
    from data_synthesis.environment.build import Build

    packed = tmp_path / "corpus.jsonl.zst"
    packed.write_bytes(zstandard.compress(corpus.read_bytes()))
    assert packed.stat().st_size < corpus.stat().st_size / 2
    config = IndexConfig(cache_dir=str(tmp_path / "c"), shard_bytes=-(-corpus.stat().st_size // 4))
    assert Build.named([corpus], config).shards == 4
    assert Build.named([packed], config).shards in (4, 5)
