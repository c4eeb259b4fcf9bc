"""The file-system calls of planning a run and of its tasks, per count of input files.

    python benchmarks/bench_task_start.py --files 1000 100000 --tasks 1024 --work /tmp/bench_task_start

A terabyte corpus ships as ~100,000 files on a cluster's shared file system, where a metadata
call (a stat, an open) is a round trip to a metadata server shared by every node. For each file
count this writes a corpus of that many small JSONL files, builds its search index, and then,
in a fresh process traced by strace, counts the calls of three steps (CPU seconds from an
untraced run of the same steps):

- plan: what the submitting process does once (`make_plan`, and naming the planning index as
  the planning stage's jobs are made);
- map task: one whole extract task, rank 0 of `--tasks`;
- open index: what a planning task does before its first search (its environment's index).

`--code DIR` runs the steps with another checkout's code (a `git worktree` of an older commit).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.measure import STRACE_CALL, child_or_traced  # noqa: E402

STEPS = ("plan", "map task", "open index")
MARK = "/bench-task-start-mark-"
GROUPS = {
    "stat": ("stat", "lstat", "fstat", "newfstatat", "statx", "access", "readlink"),
    "open": ("open", "openat"),
    "read": ("read", "pread64"),
}


def make_corpus(folder: Path, files: int, bytes_per_file: int = 1000) -> Path:
    """`files` JSONL files of one document each, in folders of 1,000 (as corpora ship)."""
    done = folder / "done"
    if done.exists() and done.read_text() == str(files):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    words = "river city bridge museum opened founded capital lies north south".split()
    for number in range(files):
        path = folder / f"{number // 1000:03d}" / f"doc_{number:06d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = " ".join(words[(number + i) % len(words)] for i in range(bytes_per_file // 7))
        text = f"Place {number} is a city. {text}"
        path.write_text(json.dumps({"id": f"d{number}", "text": text}) + "\n")
    done.write_text(str(files))
    return folder


def child(args) -> None:
    """Run in the code under test (sys.path): `setup` plans the run and builds its index,
    `steps` runs the three steps, marking each one's start with a stat of MARK + name."""
    from data_synthesis.config import load_pipeline_config
    from data_synthesis.engine import runner, tasks

    state = args.work / "state.pickle"
    if args.child == "setup":
        config = load_pipeline_config(None, [f"engine.tasks={args.tasks}"])
        plan = runner.make_plan(config, args.work / "out", [str(args.corpus)])
        planning = runner.jobs_for(plan, "planning")[-1][1][0].plan
        env = tasks._environment(planning, "planning", None)
        env.index(env.config.corpora)
        state.write_bytes(pickle.dumps((config, planning)))
        return
    config, planning = pickle.loads(state.read_bytes())
    seconds = {}

    def step(name: str, call) -> None:
        os.path.exists(MARK + name)
        started = time.process_time()
        call()
        seconds[name] = round(time.process_time() - started, 3)

    def plan_run():
        plan = runner.make_plan(config, args.work / "out", [str(args.corpus)])
        runner.jobs_for(plan, "planning", set())  # names the index, as a submission does

    def open_index():
        env = tasks._environment(planning, "planning", None)
        env.index(env.config.corpora)

    tasks.run_extract(planning, 1, planning.map_tasks)  # imports what the steps import
    open_index()
    shutil.rmtree(args.work / "out" / "counters", ignore_errors=True)
    step("plan", plan_run)
    step("map task", lambda: tasks.run_extract(planning, 0, planning.map_tasks))
    step("open index", open_index)
    os.path.exists(MARK + "end")
    print(json.dumps(seconds))


def _child_command(code: Path, work: Path, corpus: Path, tasks: int, what: str) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--child",
        what,
        "--code",
        str(code),
        "--work",
        str(work),
        "--corpus",
        str(corpus),
        "--tasks",
        str(tasks),
    ]


def count_calls(trace: Path) -> dict:
    """Calls of each group per step, from strace's lines (the marks split the steps)."""
    counts: dict[str, Counter] = {}
    current = None
    with trace.open(errors="replace") as handle:
        for line in handle:
            if MARK in line:
                current = line.split(MARK, 1)[1].split('"', 1)[0]
                counts.setdefault(current, Counter())
                continue
            found = STRACE_CALL.match(line)
            if current in STEPS and found:
                for group, names in GROUPS.items():
                    if found.group(1) in names:
                        counts[current][group] += 1
    return {step: dict(counts.get(step, Counter())) for step in STEPS}


def bench(files: int, tasks: int, work: Path, code: Path) -> dict:
    corpus = make_corpus(work / f"corpus_{files}", files)
    run, cache = work / f"run_{files}", work / f"cache_{files}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    # the index is kept between runs (every version names it alike); its files' identities not
    shutil.rmtree(cache / "identities", ignore_errors=True)
    env = dict(os.environ, MEGATRON_AGENTIC_INDEX_CACHE=str(cache))
    setup = _child_command(code, run, corpus, tasks, "setup")
    subprocess.run(setup, env=env, check=True, stdout=subprocess.DEVNULL)
    untraced = subprocess.run(
        _child_command(code, run, corpus, tasks, "steps"),
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = json.loads(untraced.stdout.strip().splitlines()[-1])
    trace = run / "strace.txt"
    subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=%file,%desc", "-o", str(trace)]
        + _child_command(code, run, corpus, tasks, "steps"),
        env=env,
        check=True,
        capture_output=True,
    )
    calls = count_calls(trace)
    trace.unlink()
    return {"files": files, "tasks": tasks, "cpu_seconds": seconds, "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 100000])
    parser.add_argument("--tasks", type=int, default=1024)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_task_start"))
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose code runs")
    parser.add_argument("--child", choices=("setup", "steps"), help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if child_or_traced(args, child, "bench_task_start.py"):
        return
    results = [bench(n, args.tasks, args.work, args.code.resolve()) for n in args.files]
    print(json.dumps(results, indent=2))
    print("| input files | step | stat | open | read | CPU s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        for step in STEPS:
            c = r["calls"][step]
            cells = [f"{c.get(g, 0):,}" for g in GROUPS] + [str(r["cpu_seconds"][step])]
            print(f"| {r['files']:,} | {step} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
