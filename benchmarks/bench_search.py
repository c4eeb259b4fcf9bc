"""CPU time and memory of the environment's BM25 search on an indexed corpus.

Draws --queries queries from the corpus's first 3,000 documents (a seeded random run of 2-12
words of a document's text, plus its title: the shape of a planning or agent query), opens the
index (built first if the cache has none) and runs them, printing CPU milliseconds per search
and the process's peak RSS before and after the searches, and the memory the opened index holds
(`index_open_mb`, traced by tracemalloc). --code runs another checkout's
data_synthesis (e.g. a `git worktree` of an earlier commit) on the same queries, for a
before/after comparison; --hits writes every query's (document, score) results as JSON.
--record runs the synthesis pipeline on --corpus and writes every search its stages make (one
per line: query, k and stage, tab-separated), and prints each stage's searches per question;
--replay searches such a file's queries, in order (their repeats
included), instead of drawn ones. --pages N then locates N documents drawn from the whole corpus
by id and by url (CPU microseconds per page; the index's cache of located pages is bypassed).
--shards-open N keeps at most N shards open (the cost of reopening them).

    python benchmarks/bench_search.py --corpus /tmp/bench_synthesis/corpus_100mb.jsonl \
        --cache-dir /tmp/bench_synthesis/run_100mb_index --queries 3000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from traceback import walk_stack

REPO = Path(__file__).resolve().parents[1]


def queries(corpus: Path, count: int, seed: int = 0) -> list[str]:
    with corpus.open(encoding="utf-8") as handle:
        docs = [json.loads(line) for _, line in zip(range(3000), handle)]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        doc = rng.choice(docs)
        words = doc["text"].split()
        start = rng.randrange(max(1, len(words) - 12))
        out.append(
            " ".join(words[start : start + rng.randint(2, 12)]) + " " + (doc.get("title") or "")
        )
    return out


def page_keys(corpus: Path, count: int, seed: int = 0) -> list[str]:
    """The ids and urls of `count` documents drawn uniformly from the whole corpus (a reservoir
    sample), so pages of every shard are looked up."""
    rng, drawn = random.Random(seed), []
    with corpus.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            slot = number if number < count else rng.randrange(number + 1)
            if slot >= count:
                continue
            doc = json.loads(line)
            key = str(doc.get("id") or doc.get("url"))
            pair = (key, str(doc.get("url") or key))
            if number < count:
                drawn.append(pair)
            else:
                drawn[slot] = pair
    return [key for pair in drawn for key in pair]


def record(corpus: Path, cache_dir: str, out: Path) -> dict:
    """Run the pipeline on `corpus` in this process (one task at a time), logging its searches
    with the stage that made each (the stage method's module on the call stack); returns each
    stage's searches, and per question of the run."""
    from data_synthesis.__main__ import main as synthesis
    from data_synthesis.engine.io import count_lines
    from data_synthesis.environment.index import CorpusIndex
    from data_synthesis.stages import STAGE_TABLE

    stage_of = {spec.method[0]: spec.name for spec in STAGE_TABLE if spec.method}
    ranked, made = CorpusIndex.ranked, Counter()  # every search goes through ranked()
    with out.open("w", encoding="utf-8") as log, tempfile.TemporaryDirectory() as run:

        def logged(self, query: str, k: int = 10, shards=None):
            frames = (frame.f_globals.get("__name__") for frame, _ in walk_stack(None))
            stage = next((stage_of[name] for name in frames if name in stage_of), "other")
            made[stage] += 1
            log.write(f"{' '.join(query.split())}\t{k}\t{stage}\n")
            yield from ranked(self, query, k, shards)

        CorpusIndex.ranked = logged
        synthesis(
            ["pipeline", f"environment.cache_dir={cache_dir}", "--input", str(corpus)]
            + ["--output", run, "--workers", "1"]
        )
        questions = sum(count_lines(path) for path in Path(run, "questions").glob("*.jsonl.zst"))
    return {
        "questions": questions,
        "searches": dict(made),
        "per_question": {stage: round(n / max(questions, 1), 2) for stage, n in made.items()},
    }


def scoped(query: str, shards: int, count: int) -> list[int]:
    """`count` of `shards` drawn for one query, the same in every run."""
    return random.Random(query).sample(range(shards), count)


def replayed(path: Path) -> list[tuple[str, int]]:
    rows = [line.rstrip("\n").split("\t") for line in path.open(encoding="utf-8")]
    return [(row[0], int(row[1]) if len(row) > 1 else 10) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument(
        "--cache-dir", required=True, help="the index cache (environment.cache_dir)"
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="the index's shards (0: one per environment.index_shard_mb)",
    )
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose code is measured")
    parser.add_argument("--hits", type=Path, help="write each query's results here (JSON)")
    parser.add_argument("--record", type=Path, help="log the pipeline's searches here and stop")
    parser.add_argument("--replay", type=Path, help="search a --record log's queries instead")
    parser.add_argument(
        "--pages", type=int, default=0, help="then locate this many documents' ids and urls"
    )
    parser.add_argument(
        "--shards-open", type=int, default=0, help="shards a task keeps open (index.SHARDS_OPEN)"
    )
    parser.add_argument(
        "--scope",
        type=int,
        default=0,
        help="search this many shards per query, drawn at random as environment.search_shards "
        "draws them (0: every shard)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    from data_synthesis.environment import index as index_module
    from data_synthesis.environment.index import CorpusIndex, IndexConfig

    if args.shards_open:  # fewer than the index's shards: searches over all of them reopen some
        index_module.SHARDS_OPEN = args.shards_open

    if args.record:
        made = record(args.corpus, args.cache_dir, args.record)
        print(json.dumps({"recorded": len(replayed(args.record)), "to": str(args.record)} | made))
        return
    if args.replay:
        asked = replayed(args.replay)
    else:
        asked = [(query, 10) for query in queries(args.corpus, args.queries)]
    config = IndexConfig(cache_dir=args.cache_dir)
    if args.shards:  # an index is cached per layout (older checkouts' IndexConfig has `shards` too)
        config = IndexConfig(cache_dir=args.cache_dir, shards=args.shards)
    CorpusIndex.open([args.corpus], config)  # built here if not yet, untraced (tracemalloc
    # made a 1 GB build 505 s instead of 127), then opened again to measure what it holds
    tracemalloc.start()  # numpy's arrays are traced too; RSS would not tell (a reused heap)
    index = CorpusIndex.open([args.corpus], config)
    opened_mb = tracemalloc.get_traced_memory()[0] / 2**20  # what the open index holds
    tracemalloc.stop()
    if args.scope and args.scope < len(index.shards):  # (query, k, its shards), seeded by query
        asked = [(*q, tuple(sorted(scoped(q[0], len(index.shards), args.scope)))) for q in asked]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.process_time()
    results = [[(hit.doc_id, round(hit.score, 4)) for hit in index.search(*q)] for q in asked]
    cpu_ms = (time.process_time() - started) / len(asked) * 1e3
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"code": str(args.code), "passages": index.stats["passages"], "queries": len(asked)}
    row.update(cpu_ms_per_search=round(cpu_ms, 3), peak_rss_mb=[round(before), round(after)])
    row.update(shards=len(index.shards), index_open_mb=round(opened_mb, 1), scope=args.scope)
    if hasattr(index.shards, "opened"):  # older checkouts hold every shard open
        row.update(shards_open=index.shards.opened())
    if args.pages:  # locating a page by id or url, none of them kept from an earlier look-up
        keys = page_keys(args.corpus, args.pages)
        started = time.process_time()
        located = sum(index._find(key) is not None for key in keys)
        cpu_us = (time.process_time() - started) / len(keys) * 1e6
        row.update(pages=len(keys), pages_found=located, cpu_us_per_page=round(cpu_us, 1))
    print(json.dumps(row))
    if args.hits:
        args.hits.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
