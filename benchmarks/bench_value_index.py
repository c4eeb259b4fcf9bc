"""The file-system calls, CPU and memory of one value_index task, per shape of the shuffle.

    python benchmarks/bench_value_index.py --reduce-tasks 16384 --range-kb 4 64 --work /tmp/bvi

A value_index task (data_synthesis/engine/memory_store.py, `build_lookups`) merges its index
partition's value rows of every reduce task's file side by side, then reads their relation
rows. The stage makes reduce tasks x index partitions such reads; the range a task reads of
each file is the value rows' total size over that product. At the 1 TB plan's 16,384 reduce tasks (about
1 TiB of value rows): 4 KB ranges with 16,384 index partitions (engine.index_partitions equal to
engine.partitions, as before), 64 KB with 1,024 (its default since 2026-12-05).

For each `--range-kb` this writes `--reduce-tasks` reduce files holding that many KB of value
rows for index partition 0 (sorted (relation, value, entity) rows; as in the bundled corpus's
memory, where 2,297 rows have 1,862 values, most values are one row's and a quarter of the rows
share common ones) and one relation row each, then runs `build_lookups(out, 0)` in a fresh
process: once untraced (CPU seconds, peak RSS) and once under strace (opens and reads).
`--code DIR` runs it with another checkout's code (a `git worktree` of an older commit); the
files hold the same rows for both, written by the code under test (the shuffle files' layout
changed on 2026-12-05).
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.measure import STRACE_CALL, child_or_traced  # noqa: E402

GROUPS = {"open": ("open", "openat"), "read": ("read", "pread64")}
COMMON = 0.25  # share of rows whose value is a common one (the rest name their own value)
VALUES = 50_000  # distinct common values


def _row(relation: str, value: str, entity: str) -> bytes:
    return (json.dumps({"relation": relation, "value": value, "entity": entity}) + "\n").encode()


def make_files(out: Path, reduce_tasks: int, range_kb: int) -> None:
    """The reduce tasks' value and relation rows of a run, index partition 0 filled, written by
    the code under test (one file per reduce task since 2026-12-05; two before, whose layout
    `_write_two_files` writes for an older checkout)."""
    from data_synthesis.engine import memory_store

    write = getattr(memory_store, "write_index_rows", None)
    if write is None:
        write = _write_two_files
    elif inspect.signature(write).parameters["values"].annotation == "dict":  # until 2026-12-05
        write = _dict_form(write)
    shutil.rmtree(out, ignore_errors=True)
    rng = random.Random(0)
    relations = ["is a", "is located in", "was founded in", "has a population of"]
    for task in range(reduce_tasks):
        rows, size = [], 0
        while size < range_kb * 1024:
            if rng.random() < COMMON:  # a few very common ("is a: city"), most rarer
                value = f"value {min(int(rng.paretovariate(1.2)) - 1, VALUES - 1)}"
            else:
                value = f"value {task}-{len(rows)}"
            row = (relations[len(rows) % 4], value, f"entity {task}-{len(rows)}")
            rows.append(row)
            size += len(_row(*row))
        values = [(0, {"relation": a, "value": b, "entity": c}) for a, b, c in sorted(set(rows))]
        statement = {"id": str(task), "entity": f"entity {task}-0"}
        peer = {"relation": "has a population of", "type": "city", "statement": statement}
        write(out, task, values, {0: [peer]}, 1)


def _groups(values: list) -> dict[int, list]:
    """(index partition, row) pairs as {index partition: rows}, as older code took them."""
    groups: dict[int, list] = {}
    for group, row in values:
        groups.setdefault(group, []).append(row)
    return groups


def _dict_form(write):
    """Until 2026-12-05 `write_index_rows` took the value rows as {index partition: rows}."""
    return lambda out, task, values, *rest: write(out, task, _groups(values), *rest)


def _write_two_files(out: Path, task: int, values: list, relations: dict, index: int) -> None:
    """Until 2026-12-05: memory/values/pT.jsonl and memory/relations/pT.jsonl."""
    from data_synthesis.engine.shuffle import write_grouped

    for kind, groups in (("values", _groups(values)), ("relations", relations)):
        rows = ((i, (json.dumps(row) + "\n").encode()) for i in groups for row in groups[i])
        write_grouped(out / "memory" / kind / f"p{task:05d}.jsonl", index, rows)


def child(args) -> None:
    """In the code under test (sys.path): `make` writes the files, `task` runs one value_index
    task and prints its CPU and peak RSS."""
    from data_synthesis.engine.memory_store import build_lookups

    if args.child == "make":
        make_files(args.out, args.reduce_tasks, args.range_kb[0])
        return

    started = time.process_time()
    counts = build_lookups(args.out, 0)
    seconds = time.process_time() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cpu_seconds": round(seconds, 2), "peak_rss_mb": round(rss, 1), **counts}))


def _child_command(code: Path, out: Path, what: str = "task") -> list[str]:
    return [sys.executable, __file__, "--child", what, "--code", str(code), "--out", str(out)]


def count_calls(trace: Path, out: Path) -> dict:
    """Opens and reads of the run's files (strace -y names each descriptor's file), not the
    interpreter's own (imports)."""
    counts: Counter = Counter()
    with trace.open(errors="replace") as handle:
        for line in handle:
            found = STRACE_CALL.match(line)
            for group, names in GROUPS.items():
                if found and found.group(1) in names and str(out) in line:
                    counts[group] += 1
    return dict(counts)


def bench(reduce_tasks: int, range_kb: int, work: Path, code: Path) -> dict:
    out = work / f"run_{reduce_tasks}_{range_kb}"
    done, key = out / "done", f"{reduce_tasks} {range_kb} {code}"
    if not done.exists() or done.read_text() != key:
        command = _child_command(code, out, "make")
        subprocess.run(
            [*command, "--reduce-tasks", str(reduce_tasks), "--range-kb", str(range_kb)],
            check=True,
        )
        done.write_text(key)
    shutil.rmtree(out / "memory" / "lookup", ignore_errors=True)
    untraced = subprocess.run(_child_command(code, out), check=True, capture_output=True, text=True)
    result = json.loads(untraced.stdout.strip().splitlines()[-1])
    trace = work / "strace.txt"
    shutil.rmtree(out / "memory" / "lookup", ignore_errors=True)
    subprocess.run(
        ["strace", "-f", "-qq", "-y", "-e", "trace=open,openat,read,pread64", "-o", str(trace)]
        + _child_command(code, out),
        check=True,
        capture_output=True,
    )
    calls = count_calls(trace, out)
    trace.unlink()
    return {"reduce_tasks": reduce_tasks, "range_kb": range_kb, **result, "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reduce-tasks", type=int, default=16384)
    parser.add_argument("--range-kb", type=int, nargs="+", default=[4, 64])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bvi"))
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose code runs")
    parser.add_argument("--child", choices=("make", "task"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if child_or_traced(args, child, "bench_value_index.py"):
        return
    code = args.code.resolve()
    results = [bench(args.reduce_tasks, kb, args.work, code) for kb in args.range_kb]
    print(json.dumps(results, indent=2))
    print("| reduce files | range per file | opens | reads | CPU s | peak RSS MB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        c = r["calls"]
        cells = [f"{r['reduce_tasks']:,}", f"{r['range_kb']} KB", f"{c.get('open', 0):,}"]
        cells += [f"{c.get('read', 0):,}", str(r["cpu_seconds"]), str(r["peak_rss_mb"])]
        print(f"| {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
