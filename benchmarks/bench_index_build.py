"""CPU time and peak RSS of building the environment's search index, per corpus size.

For each size, writes the benchmark corpus (renamed copies of the bundled corpus, as
bench_synthesis.py does), then builds its index from scratch in a child process per checkout
(this one, and with --code an earlier one, e.g. a `git worktree` of the commit before a change),
printing each build's CPU seconds, peak RSS (of its largest process) and wall time, and whether
the two checkouts wrote the same index files byte for byte. --shards N --workers W also builds
this checkout's index in N shards, W tasks at once on datatrove's local executor (the figures
of a sharded build: the largest task's RSS, CPU summed over the tasks).

    python benchmarks/bench_index_build.py --sizes-mb 10 100 --work /tmp/bench_synthesis \
        [--code /path/to/earlier/checkout] [--shards 8 --workers 2]

--text-roots DIR ... makes each size's corpus from the text files under those folders instead
(real text, no near-copies: benchmarks/bench_environment.py's make_corpus, the first N MB).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_environment import make_corpus as make_text_corpus  # noqa: E402
from benchmarks.bench_synthesis import make_corpus, run_paths  # noqa: E402

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from data_synthesis.environment.index import CorpusIndex, IndexConfig
started = time.perf_counter()
shards, workers = int(sys.argv[4]), int(sys.argv[5])
config = IndexConfig(cache_dir=sys.argv[3], shards=shards or 1)
if workers > 1:
    from data_synthesis.environment.__main__ import build_with_workers
    build_with_workers([sys.argv[2]], config, workers)
index = CorpusIndex.open([sys.argv[2]], config, log=lambda _: None)
own, tasks = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({"cpu_s": own.ru_utime + own.ru_stime + tasks.ru_utime + tasks.ru_stime,
                  "rss_mb": max(own.ru_maxrss, tasks.ru_maxrss) / 1024,
                  "wall_s": time.perf_counter() - started,
                  "passages": index.stats["passages"], "index_mb": index.stats["index_bytes"] / 1e6,
                  "directory": str(index.directory)}))
"""


def build(code: Path, corpus: Path, cache: Path, shards: int = 0, workers: int = 1) -> dict:
    """Build the index of `corpus` with `code`'s data_synthesis in a fresh child process
    (`shards` and `workers`: this checkout's sharded build, its tasks forked by datatrove)."""
    shutil.rmtree(cache, ignore_errors=True)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(code),
            str(corpus),
            str(cache),
            str(shards),
            str(workers),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def differing(a: Path, b: Path) -> list[str]:
    """Files of index directory `a` whose bytes differ from `b`'s (stats.json aside)."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    return [n for n in names if n != "stats.json" and not filecmp.cmp(a / n, b / n, shallow=False)]


def _corpora(args):
    """(size in MB, corpus) of each build: the benchmark corpus, or with --text-roots real text."""
    for mb in args.sizes_mb:
        if args.text_roots:
            corpus = args.work / f"text_{mb}mb.jsonl"
            if not corpus.exists():
                make_text_corpus([str(root) for root in args.text_roots], mb, corpus)
        else:
            corpus = run_paths(args.work, mb)[0]
            make_corpus(corpus, mb)
        yield mb, corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_synthesis"))
    parser.add_argument("--code", type=Path, help="an earlier checkout, built on the same corpora")
    parser.add_argument(
        "--shards", type=int, default=0, help="also build this checkout's index in N shards"
    )
    parser.add_argument("--workers", type=int, default=1, help="shard tasks at once (--shards)")
    parser.add_argument(
        "--text-roots", type=Path, nargs="+", help="real text: the text files under these folders"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    codes = {"this": REPO} | ({"earlier": args.code.resolve()} if args.code else {})
    for mb, corpus in _corpora(args):
        results = {}
        runs = [(label, code, 0, 1) for label, code in codes.items()]
        if args.shards:
            runs.append((f"{args.shards}x{args.workers}", REPO, args.shards, args.workers))
        for label, code, shards, workers in runs:
            cache = args.work / f"index_build_{label}_{mb}mb"
            results[label] = build(code, corpus, cache, shards, workers)
            r = results[label]
            print(
                f"{mb:>5} MB  {label:<8} {r['passages']:>10,} passages  {r['cpu_s']:8.1f} CPU s  "
                f"peak RSS {r['rss_mb']:8.1f} MB  index {r['index_mb']:8.1f} MB  "
                f"wall {r['wall_s']:8.1f} s",
                flush=True,
            )
        if "earlier" in results:
            diff = differing(
                Path(results["this"]["directory"]), Path(results["earlier"]["directory"])
            )
            print(
                f"{mb:>5} MB  same index files: {'yes' if not diff else 'no: ' + ', '.join(diff)}"
            )


if __name__ == "__main__":
    main()
