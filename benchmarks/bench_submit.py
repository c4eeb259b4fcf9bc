"""What naming a run and its search index costs the submitting machine, per input size.

    python benchmarks/bench_submit.py --sizes-mb 100 1000 --files 4 --work /tmp/bench_submit

Before a SLURM submission (`--executor slurm`) submits any job it fingerprints the run's inputs
(OUT/run.json, engine/fingerprint.py) and names the planning/has search index, whose build jobs
are submitted under that name (environment/build.py's `corpus_fingerprint`); every task that
opens the index names it again. Both run on one machine, so what they read must not grow with
the corpus. For each size (split over `--files` JSONL files) this prints the seconds and the
bytes read (`rchar` of /proc/self/io: read calls, whether from disk or the page cache) of the
run's fingerprint, of naming the index with an empty cache, and of naming it again (what a
task does). Run it from a checkout (or `git worktree`) of each version to compare them.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_synthesis.config import PipelineConfig  # noqa: E402
from data_synthesis.engine.runner import make_plan  # noqa: E402
from data_synthesis.environment.build import IndexConfig, corpus_fingerprint  # noqa: E402


def make_corpus(folder: Path, megabytes: int, files: int) -> list[Path]:
    """`files` JSONL files of `megabytes` MB in all (random words; only their bytes matter)."""
    folder.mkdir(parents=True, exist_ok=True)
    line_bytes = 1 << 16
    paths = []
    for number in range(files):
        path = folder / f"part_{number:03d}.jsonl"
        paths.append(path)
        size = megabytes * 10**6 // files
        if path.exists() and path.stat().st_size >= size:
            continue
        with path.open("w") as handle:
            for line in range(-(-size // line_bytes)):
                text = base64.b64encode(os.urandom(line_bytes * 3 // 4 - 64)).decode()
                handle.write(json.dumps({"id": f"{number}-{line}", "text": text}) + "\n")
    return paths


def _read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def measured(call) -> dict:
    started, before = time.perf_counter(), _read_bytes()
    call()
    seconds, read = time.perf_counter() - started, _read_bytes() - before
    return {"seconds": round(seconds, 3), "read_mb": round(read / 10**6, 1)}


def bench(megabytes: int, files: int, work: Path) -> dict:
    paths = make_corpus(work / f"corpus_{megabytes}mb", megabytes, files)
    cache, out = work / f"cache_{megabytes}mb", work / f"run_{megabytes}mb"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    config = IndexConfig(cache_dir=str(cache))
    return {
        "megabytes": megabytes,
        "files": files,
        "run_fingerprint": measured(
            lambda: make_plan(PipelineConfig(), out, [str(p) for p in paths])
        ),
        "index_name": measured(lambda: corpus_fingerprint(paths, config)),
        "index_name_again": measured(lambda: corpus_fingerprint(paths, config)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_submit"))
    args = parser.parse_args()
    results = [bench(size, args.files, args.work) for size in args.sizes_mb]
    print(json.dumps(results, indent=2))
    print("| input | run fingerprint | index name | index name again |  (s / MB read)")
    print("|---|---|---|---|")
    for r in results:
        cells = [r[key] for key in ("run_fingerprint", "index_name", "index_name_again")]
        text = " | ".join(f"{c['seconds']} / {c['read_mb']:,}" for c in cells)
        print(f"| {r['megabytes']:,} MB in {r['files']} files | {text} |")


if __name__ == "__main__":
    main()
