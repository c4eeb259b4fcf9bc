"""Index size and build time of the environment's BM25 index (data_synthesis/environment).

Builds a JSONL corpus of real text found on this machine (Python sources, docs, man pages under
the given roots, cut into documents of at most 20 KB) up to --megabytes, then measures, each in
its own process: the first `index` (build), the second (load from the cache), and the latency
of 100 searches. The bundled corpus is measured the same way.

    python benchmarks/bench_environment.py --megabytes 256 --work /tmp/bench_env
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import run_measured  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".rst", ".txt"}


def make_corpus(roots: list[str], megabytes: float, out: Path) -> dict:
    """Text files under `roots` as JSONL documents, until `megabytes` of text."""
    target, written, docs = megabytes * 1e6, 0, 0
    with out.open("w", encoding="utf-8") as handle:
        for root in roots:
            for dirpath, _, files in os.walk(root):
                for name in sorted(files):
                    path = Path(dirpath) / name
                    if path.suffix not in SUFFIXES:
                        continue
                    try:
                        text = path.read_text(encoding="utf-8")
                    except (OSError, UnicodeDecodeError):
                        continue
                    for start in range(0, len(text), 20000):
                        chunk = text[start : start + 20000]
                        row = {"id": f"{path}#{start}", "title": path.name, "text": chunk}
                        handle.write(json.dumps(row) + "\n")
                        written += len(chunk.encode())
                        docs += 1
                    if written >= target:
                        return {"documents": docs, "text_bytes": written}
    return {"documents": docs, "text_bytes": written}


def measure(corpus: Path, cache: Path) -> dict:
    command = [sys.executable, "-m", "data_synthesis.environment", "index", str(corpus)]
    command += ["--cache-dir", str(cache)]
    build = run_measured(command)
    stats = json.loads(build.stdout[build.stdout.index("{") :])
    load = run_measured(command)
    queries = [
        "capital of Austria",
        "how to configure the tokenizer",
        "gradient checkpointing memory",
        "parse command line arguments",
    ] * 25
    script = (
        "import sys,time;from data_synthesis.environment.index import CorpusIndex,IndexConfig;"
        f"ix=CorpusIndex.open([{str(corpus)!r}],IndexConfig(cache_dir={str(cache)!r}));"
        f"t=time.perf_counter();[ix.search(q) for q in {queries!r}];"
        "print((time.perf_counter()-t)/len(" + repr(queries) + "))"
    )
    latency = run_measured([sys.executable, "-c", script])
    return {
        "text_mb": round(stats["text_bytes"] / 1e6, 1),
        "documents": stats["documents"],
        "passages": stats["passages"],
        "build_s": round(build.seconds, 1),
        "build_peak_rss_mb": round(build.peak_rss_mb),
        "index_mb": round(stats["index_bytes"] / 1e6, 1),
        "load_s": round(load.seconds, 2),
        "search_ms": round(float(latency.stdout.strip().splitlines()[-1]) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=float, default=64)
    parser.add_argument("--work", default="/tmp/bench_environment")
    parser.add_argument("--roots", nargs="+", default=[sys.prefix, "/usr/share", "/usr/lib"])
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["PYTHONPATH"] = str(REPO)
    rows = {"bundled": measure(REPO / "data_synthesis/data/corpus.jsonl", work / "cache")}
    corpus = work / f"text-{args.megabytes:g}MB.jsonl"
    if not corpus.exists():
        started = time.perf_counter()
        made = make_corpus(args.roots, args.megabytes, corpus)
        print(f"corpus {corpus}: {made} in {time.perf_counter() - started:.0f} s", flush=True)
    rows[f"{args.megabytes:g} MB"] = measure(corpus, work / "cache")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
