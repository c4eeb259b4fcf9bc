"""Command line of the environment: build (or reuse) the BM25 index of corpora, search it, run a
tool call.

    python -m data_synthesis.environment index CORPUS.jsonl [...] [--cache-dir DIR]
    python -m data_synthesis.environment search CORPUS.jsonl "query" [--k 10]
    python -m data_synthesis.environment call '{"name": "python", "arguments": {"code": "..."}}'
        [--tools examples/custom_tools/tools.yaml] [--corpus CORPUS.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from data_synthesis.environment.executor import Environment, EnvironmentConfig
from data_synthesis.environment.index import CorpusIndex, IndexConfig
from data_synthesis.environment.registry import ToolRegistry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_synthesis.environment")
    sub = parser.add_subparsers(dest="command", required=True)
    index = sub.add_parser("index", help="build (once) and describe the index of corpora")
    index.add_argument("corpora", nargs="+")
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
    args = parser.parse_args(argv)
    if args.command == "index":
        started = time.perf_counter()
        opened = CorpusIndex.open(args.corpora, IndexConfig(cache_dir=args.cache_dir))
        stats = dict(opened.stats, directory=str(opened.directory))
        stats["open_seconds"] = round(time.perf_counter() - started, 2)
        print(json.dumps(stats, indent=1))
    elif args.command == "search":
        opened = CorpusIndex.open([args.corpus], IndexConfig(cache_dir=args.cache_dir))
        for hit in opened.search(args.query, args.k):
            print(f"{hit.rank}. {hit.score:.2f} [{hit.title}]({hit.url}) {hit.text[:160]}")
    else:
        config = EnvironmentConfig(cache_dir=args.cache_dir)
        if args.corpus:
            config.corpora = args.corpus
        env = Environment(ToolRegistry.from_config(args.tools), config)
        result = env.execute(json.loads(args.call))
        print(result.text)
        return 0 if result.ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
