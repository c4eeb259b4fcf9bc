"""Peak RSS and CPU of one memory reduce task whose partition holds a hub entity.

    python benchmarks/bench_memory_hub.py --statements 50000 200000 800000 --work /tmp/bmh

In web text a few entities ("United States") are the subject of a share of every document's
statements, so their count grows with the corpus, and an entity's statements all go to one
reduce task (data_synthesis/engine/memory_store.py, `reduce_partition`). The record keeps a
sample of `engine.max_statements_per_entity` (512) of them; this measures what the task holds
while it builds it. For each `--statements` N this writes one map task's statements file with N
statements of one entity (each from its own document; two relations, 50 distinct numbers, as
a population or a founding year repeated across pages) and runs the reduce of its partition in
a fresh process: CPU seconds and peak RSS (`ru_maxrss`). `--entities K` spreads the statements
over K entities instead (a partition without a hub: what a reduce task holds per statement);
`--distinct` gives each statement its own value and mention (what a hub's record still
gathers: its distinct values and mentioned entities). `--code DIR` runs it with another
checkout's code (a `git worktree` of an older commit); the statements file is written by the
code under test.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAP = 512  # engine.max_statements_per_entity's default
RELATIONS = ("has a population of", "is located in")


def _statement(i: int, entities: int = 1, distinct: bool = False) -> dict:
    relation, number = RELATIONS[i % 2], 1000 + (i if distinct else i % 50)
    entity = "united states" if entities == 1 else f"town {i % entities}"
    sentence = f"The {entity.title()} {relation} {number}."
    return {
        "entity": entity,
        "entity_name": entity.title(),
        "extractor": "heuristic",
        "id": f"doc-{i:07d}@0#0",
        "mentions": [f"town {i if distinct else i % 7}"],
        "relation": relation,
        "sentence": sentence,
        "source": f"doc-{i:07d}",
        "span": [0, len(sentence)],
        "time": None,
        "value": {"entity": None, "number": number, "text": str(number), "type": "number"},
    }


def child(args) -> None:
    """In the code under test (sys.path): `make` writes the statements, `task` runs the reduce
    and prints its CPU seconds and peak RSS."""
    from data_synthesis.engine.memory_store import Layout, reduce_partition, statements_file
    from data_synthesis.engine.shuffle import ShuffleWriter

    if args.child == "make":
        shutil.rmtree(args.out, ignore_errors=True)
        with ShuffleWriter(statements_file(args.out, 0), 1) as writer:
            for i in range(args.statements[0]):
                statement = _statement(i, args.entities, args.distinct)
                writer.write(0, (json.dumps(statement) + "\n").encode())
            writer.commit()
        return
    started = time.process_time()
    counts = reduce_partition(args.out, 0, Layout(1), cap=CAP)
    seconds = time.process_time() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cpu_seconds": round(seconds, 2), "peak_rss_mb": round(rss, 1), **counts}))


def _child(args, code: Path, out: Path, what: str, statements: int) -> list[str]:
    return [
        *(sys.executable, __file__, "--child", what, "--code", str(code), "--out", str(out)),
        *("--statements", str(statements), "--entities", str(args.entities)),
        *(["--distinct"] if args.distinct else []),
    ]


def bench(args, statements: int, code: Path) -> dict:
    out = args.work / f"hub_{statements}_{args.entities}{'_distinct' if args.distinct else ''}"
    subprocess.run(_child(args, code, out, "make", statements), check=True)
    done = subprocess.run(
        _child(args, code, out, "task", statements), check=True, capture_output=True, text=True
    )
    return {"statements": statements, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--statements", type=int, nargs="+", default=[50_000, 200_000, 800_000])
    parser.add_argument(
        "--entities", type=int, default=1, help="how many entities share the statements (1: a hub)"
    )
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="each statement its own value and mention (else 50 values and 7 mentions repeat)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/bmh"))
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose code runs")
    parser.add_argument("--child", choices=("make", "task"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(args.code.resolve()))
        child(args)
        return
    results = [bench(args, n, args.code.resolve()) for n in args.statements]
    print(json.dumps(results, indent=2))
    print("| statements | entities | CPU s | peak RSS MB |\n| ---: | ---: | ---: | ---: |")
    for row in results:
        cells = (f"{row['statements']:,}", f"{row['entities']:,}", row["cpu_seconds"])
        print(f"| {' | '.join(map(str, cells))} | {row['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
