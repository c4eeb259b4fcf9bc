"""Command line of the environment: build (or reuse) the BM25 index of corpora, search it, run a
tool call.

    python -m data_synthesis.environment index CORPUS.jsonl [...] [--cache-dir DIR]
        [--shards N --workers W]   # N shards, W at once (datatrove's local executor)
    python -m data_synthesis.environment search CORPUS.jsonl "query" [--k 10]
    python -m data_synthesis.environment call '{"name": "python", "arguments": {"code": "..."}}'
        [--tools examples/custom_tools/tools.yaml] [--corpus CORPUS.jsonl]

Every command takes the index's layout, `--shards N` or `--shard-mb M` (as the `environment:`
keys index_shards and index_shard_mb): an index is cached per layout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from data_synthesis.environment.build import Build, dropped_on_corpus_error
from data_synthesis.environment.executor import Environment, EnvironmentConfig
from data_synthesis.environment.index import SHARD_MB, CorpusIndex, IndexConfig
from data_synthesis.environment.jobs import index_jobs
from data_synthesis.environment.registry import ToolRegistry


def build_with_workers(corpora: list[str], config: IndexConfig, workers: int) -> None:
    """The index build's jobs (environment/jobs.py) on datatrove's local executor, `workers`
    shard tasks at once; logs under <cache>/logs/<fingerprint>/."""
    from data_synthesis.engine.progress import LocalExecutor

    build = Build.named([Path(c).resolve() for c in corpora], config)
    if (build.directory / "stats.json").exists():
        return
    with dropped_on_corpus_error(build):
        for name, pipeline, tasks in index_jobs(build):
            LocalExecutor(
                pipeline=pipeline,
                tasks=tasks,
                workers=min(workers, tasks),
                logging_dir=str(Path(config.cache_dir) / "logs" / build.directory.name / name),
                skip_completed=False,
                start_method="fork",
            ).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_synthesis.environment")
    sub = parser.add_subparsers(dest="command", required=True)
    index = sub.add_parser("index", help="build (once) and describe the index of corpora")
    index.add_argument("corpora", nargs="+")
    index.add_argument(
        "--workers", type=int, default=1, help="shards built at once (datatrove local tasks)"
    )
    search = sub.add_parser("search", help="top-k passages for a query")
    search.add_argument("corpus")
    search.add_argument("query")
    search.add_argument("--k", type=int, default=10)
    call = sub.add_parser("call", help="execute one tool call (JSON)")
    call.add_argument("call")
    call.add_argument("--tools", default=None, help="YAML with a `tools:` list")
    call.add_argument("--corpus", action="append", default=None)
    for p in (index, search, call):
        p.add_argument("--cache-dir", default=IndexConfig.cache_dir)
        p.add_argument("--shards", type=int, default=0, help="index shards (0: one per --shard-mb)")
        p.add_argument(
            "--shard-mb", type=int, default=SHARD_MB, help="MiB of corpus per index shard"
        )
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _index_config(args) -> IndexConfig:
    return IndexConfig(
        cache_dir=args.cache_dir, shards=args.shards, shard_bytes=args.shard_mb << 20
    )


def _log(message: str) -> None:
    """A build's progress goes to stderr: stdout is the command's result (`index`: JSON)."""
    print(message, file=sys.stderr)


def _run(args) -> int:
    if args.command == "index":
        started = time.perf_counter()
        config = _index_config(args)
        if args.workers > 1:
            build_with_workers(args.corpora, config, args.workers)
        opened = CorpusIndex.open(args.corpora, config, log=_log)
        stats = dict(opened.stats, directory=str(opened.directory))
        stats["open_seconds"] = round(time.perf_counter() - started, 2)
        print(json.dumps(stats, indent=1))
    elif args.command == "search":
        opened = CorpusIndex.open([args.corpus], _index_config(args), log=_log)
        for hit in opened.search(args.query, args.k):
            print(f"{hit.rank}. {hit.score:.2f} [{hit.title}]({hit.url}) {hit.text[:160]}")
    else:
        config = EnvironmentConfig(cache_dir=args.cache_dir, index_shards=args.shards)
        config.index_shard_mb = args.shard_mb
        if args.corpus:
            config.corpora = args.corpus
        env = Environment(ToolRegistry.from_config(args.tools), config, log=_log)
        result = env.execute(json.loads(args.call))
        print(result.text)
        return 0 if result.ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
