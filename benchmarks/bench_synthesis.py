"""Synthesis engine throughput and memory at 10 MB, 100 MB, 1 GB of text (CPU heuristic baseline).

    python benchmarks/bench_synthesis.py --sizes-mb 10 100 --jobs 2 --work /tmp/bench_synth
    python benchmarks/bench_synthesis.py --sizes-mb 10 100 1000 --jobs 2 --stages extract memory value_index questions reasoning dedup
    python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --sample-tasks 8 --stages ...

The input is the bundled corpus repeated with new entity names: copy k renames every title
entity (and its mentions in all documents of the copy) to "<title> <k-code>" and changes the
numbers, so copies are new entities and statements, not duplicates. Each stage's tasks run as
separate processes (`--rank R`, `--jobs` of them at once), so the peak RSS measured (os.wait4,
benchmarks/measure.py) is one task's own and the seconds are CPU seconds summed over tasks;
the search index of the planning/has environment is built once beforehand (`python -m
data_synthesis.environment index`, its own row: a corpus-wide job, not a task); map tasks and partitions grow with the input (one per `--mb-per-task` MB), so
the RSS per task should stay flat while the total time grows linearly. Prints Markdown tables
(time and RSS per stage; MB and files on disk per folder of the run) and writes them to
WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import Measured, run_measured  # noqa: E402
from data_synthesis.__main__ import BUNDLED_CORPUS  # noqa: E402

STAGES_BY_RANK = ("extract", "memory", "value_index", "questions", "planning", "reasoning", "has")
ALL_STAGES = (*STAGES_BY_RANK, "dedup", "finalize")


# Consonants but s and y: no code is a stop word or has a suffix the stemmer cuts ("QBY" and
# "QBI" are one stem)
_CODE_LETTERS = "BCDFGHJKLMNPQRTVWXZ"


def _code(k: int) -> str:
    """Copy k's code: "QB", "QC", ..., "QBB", ... A search tells the copies apart only by their
    codes, so each is a term of its own in the index: two letters or more (single letters are
    not terms), no stop word, nothing the stemmer merges. Until 2026-12-06 the codes were
    "A".."Z", "AA", ...: 26 copies at every size, and those coded as stop words ("AN"), were
    one copy to the search, 26 of the 45 copies at 10 MB."""
    letters = ""
    k += 1
    while k:
        k, r = divmod(k - 1, len(_CODE_LETTERS))
        letters = _CODE_LETTERS[r] + letters
    return "Q" + letters


def make_corpus(path: Path, megabytes: int) -> int:
    """Write ~megabytes of renamed copies of the bundled corpus; returns the document count."""
    if path.exists() and path.stat().st_size >= megabytes << 20:
        return sum(1 for _ in open(path, "rb"))
    docs = [json.loads(line) for line in open(BUNDLED_CORPUS, encoding="utf-8")]
    titles = sorted({d.get("title") or d["id"] for d in docs}, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(t) for t in titles))
    number = re.compile(r"\b\d[\d,]*\b")
    target, written, count, k = megabytes << 20, 0, 0, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            code = _code(k)

            def rename(m, code=code):
                return f"{m.group(0)} {code}"

            def renumber(m, k=k):
                digits = m.group(0).replace(",", "")
                return f"{int(digits) + k % 97:,}" if len(digits) < 12 else m.group(0)

            for d in docs:
                doc = {
                    **d,
                    "id": f"{d['id']}-{code}",
                    "title": f"{d.get('title') or d['id']} {code}",
                    "text": number.sub(renumber, pattern.sub(rename, d["text"])),
                }
                line = json.dumps(doc, ensure_ascii=False) + "\n"
                out.write(line)
                written += len(line.encode())
                count += 1
            k += 1
    return count


def _cli(
    stage: str, corpus: Path, out: Path, tasks: int, rank: int | None, overrides: list[str]
) -> list[str]:
    command = [sys.executable, "-m", "data_synthesis", stage, _index_override(out), *overrides]
    command += ["--input", str(corpus), "--output", str(out)]
    command += ["--tasks", str(tasks), "--partitions", str(tasks)]
    return command + (["--rank", str(rank)] if rank is not None else [])


def _index_dir(out: Path) -> Path:
    return out.parent / (out.name + "_index")


def _index_override(out: Path) -> str:
    return f"environment.cache_dir={_index_dir(out)}"


def _row(runs: list, scale: float = 1.0) -> dict:
    """CPU seconds (user + system, so tasks running side by side count once each), wall
    seconds and the largest task's peak RSS; `scale` = tasks / tasks measured (a sample)."""
    row = {
        "seconds": round(sum(r.cpu_seconds for r in runs) * scale, 1),
        "wall_seconds": round(sum(r.seconds for r in runs) * scale, 1),
        "max_task_rss_mb": round(max(r.peak_rss_mb for r in runs), 1),
    }
    return row if scale == 1.0 else {**row, "tasks_measured": len(runs)}


def _sample(tasks: int, sample: int) -> list[int]:
    """`sample` ranks spread evenly over the tasks (all of them when sample is 0)."""
    if not sample or sample >= tasks:
        return list(range(tasks))
    return sorted({round(i * (tasks - 1) / (sample - 1)) for i in range(sample)})


def _forget(out: Path, stage: str, ranks: list[int]) -> None:
    """Remove datatrove's completion markers of `ranks`, the counters their work wrote last (a
    task skips a partition whose counters exist: here task r does partition r) and what a
    killed task left to resume from (its batch checkpoint, its LLM requests), so the task runs
    again from its start (and rewrites the same files) - how a sample of an earlier run, or a
    task killed when a long benchmark was stopped, is measured. Without the counters, a rerun
    of finished tasks measured a task that skipped its partition (0.2 ms); without the
    checkpoint, a killed task measured only the batches it had left."""
    for rank in ranks:
        (out / "logs" / stage / "completions" / f"{rank:05d}").unlink(missing_ok=True)
        (out / "counters" / stage / f"t{rank:05d}.json").unlink(missing_ok=True)
        (out / "checkpoints" / stage / f"t{rank:05d}.partial").unlink(missing_ok=True)
        (out / "requests" / stage / f"t{rank:05d}.jsonl").unlink(missing_ok=True)


def _forget_job(out: Path, stage: str) -> None:
    """Remove the completion markers of a whole-stage job (dedup's datatrove steps
    `logs/dedup-*`, finalize's `logs/finalize`), so a job killed when a long benchmark was
    stopped runs all its steps again when it is measured, not only those it had left."""
    for folder in (out / "logs").glob(f"{stage}*"):
        if folder.name == stage or folder.name.startswith(f"{stage}-"):
            shutil.rmtree(folder / "completions", ignore_errors=True)


def _layout(overrides: list[str]) -> list[str]:
    """The index build's flags for the layout that `environment.index_shards` and
    `environment.index_shard_mb` overrides ask for (an index is cached per layout)."""
    flags = {"environment.index_shards": "--shards", "environment.index_shard_mb": "--shard-mb"}
    pairs = (override.split("=", 1) for override in overrides)
    return [part for key, value in pairs if key in flags for part in (flags[key], value)]


MEASURES = "bench_measures.jsonl"  # in the run folder: one line per finished task


class Measures:
    """The measures of a run's finished tasks, kept in the run folder as each task ends, so a
    benchmark of many hours can be stopped (or killed) and rerun: finished tasks keep their
    measures and are not run again; the engine resumes the rest. `--sample-tasks` neither reads
    nor writes them (it reruns finished tasks on purpose)."""

    def __init__(self, out: Path):
        self.path = out / MEASURES
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        self.done = {(r["stage"], r["rank"]): r for r in map(json.loads, lines)}

    def get(self, stage: str, rank: int | None) -> Measured | None:
        record = self.done.get((stage, rank))
        return record and Measured(record["seconds"], record["peak_rss_mb"], "", record["cpu"])

    def add(self, stage: str, rank: int | None, run: Measured) -> Measured:
        record = {"stage": stage, "rank": rank, "cpu": run.cpu_seconds, "seconds": run.seconds}
        record["peak_rss_mb"] = run.peak_rss_mb
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.done[stage, rank] = record
        return run


def _run_tasks(pool, stage: str, commands: dict, measures: Measures | None) -> list[Measured]:
    """Run the tasks `commands` (rank -> command) not measured before, `jobs` at once; their
    measures and those of the tasks measured by an earlier invocation."""
    kept = {r: measures.get(stage, r) for r in commands} if measures else {}
    runs = [m for m in kept.values() if m]
    pending = {pool.submit(run_measured, c): r for r, c in commands.items() if not kept.get(r)}
    for future in as_completed(pending):
        run = future.result()
        runs.append(measures.add(stage, pending[future], run) if measures else run)
    return runs


def run_paths(work: Path, megabytes: int) -> tuple[Path, Path]:
    """The corpus and the run folder of a size in `work`."""
    return work / f"corpus_{megabytes}mb.jsonl", work / f"run_{megabytes}mb"


def bench(
    megabytes: int,
    work: Path,
    mb_per_task: int,
    stages: list[str],
    jobs: int,
    sample: int = 0,
    overrides: tuple[str, ...] = (),
) -> dict:
    corpus, out = run_paths(work, megabytes)
    documents = make_corpus(corpus, megabytes)
    tasks = max(1, math.ceil(megabytes / mb_per_task))
    ranks = _sample(tasks, sample)
    measures = None if sample else Measures(out)
    rows = {}
    with ThreadPoolExecutor(jobs) as pool:
        for stage in stages:
            if stage in ("planning", "has") and "index" not in rows:
                build = [sys.executable, "-m", "data_synthesis.environment", "index", str(corpus)]
                build += ["--cache-dir", str(_index_dir(out)), *_layout(list(overrides))]
                rows["index"] = _row([run_measured(build)])
            if stage in STAGES_BY_RANK:
                todo = [r for r in ranks if not (measures and measures.get(stage, r))]
                _forget(out, stage, todo)  # a task measured must do its work, not skip it
                commands = {r: _cli(stage, corpus, out, tasks, r, list(overrides)) for r in ranks}
                rows[stage] = _row(_run_tasks(pool, stage, commands, measures), tasks / len(ranks))
            elif sample:
                raise SystemExit(f"--sample-tasks: {stage} runs all its tasks in one job")
            else:  # dedup, finalize: the engine runs their datatrove jobs, `jobs` at once
                if not (measures and measures.get(stage, None)):
                    _forget_job(out, stage)
                command = [*_cli(stage, corpus, out, tasks, None, list(overrides))]
                command += ["--workers", str(jobs)]
                rows[stage] = _row(_run_tasks(pool, stage, {None: command}, measures))
    total = sum(row["seconds"] for name, row in rows.items() if name != "index")
    final = out / "final/stats.json"
    summary = json.loads(final.read_text()) if "finalize" in rows else _summary(out)
    return {
        "stages_run": list(rows),
        "megabytes": megabytes,
        "documents": documents,
        "tasks": tasks,
        "seconds": round(total, 1),
        "documents_per_s_per_core": round(documents / total, 2),
        "max_task_rss_mb": max(r["max_task_rss_mb"] for n, r in rows.items() if n != "index"),
        "stages": rows,
        "summary": {k: summary.get(k) for k in ("statements", "entities", "documents_by_kind")},
        "disk": disk_usage(out),
    }


SPLIT_FOLDERS = ("memory", "docs", "dedup", "final")  # reported by subfolder


def _size(files: list[Path]) -> dict:
    return {"mb": round(sum(f.stat().st_size for f in files) / 2**20, 1), "files": len(files)}


def _files(folder: Path) -> list[Path]:
    return [f for f in folder.rglob("*") if f.is_file()]


def disk_usage(out: Path) -> dict:
    """MB and files on disk per folder of the run (memory, docs, dedup and final by subfolder)
    and of its search index: what a run of this size needs on the shared file system."""
    usage = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        parts = sorted(p for p in folder.iterdir() if p.is_dir())
        if folder.name in SPLIT_FOLDERS and parts:
            usage.update({f"{folder.name}/{part.name}": _size(_files(part)) for part in parts})
            loose = [f for f in folder.iterdir() if f.is_file()]
            if loose:
                usage[f"{folder.name}/*"] = _size(loose)
        else:
            usage[folder.name] = _size(_files(folder))
    if _index_dir(out).is_dir():
        usage["index"] = _size(_files(_index_dir(out)))
    return usage


def _summary(out: Path) -> dict:
    """Statements and entities from the memory stage's counters (when the run stops early)."""
    from data_synthesis.engine.summary import stage_counters

    counts = stage_counters(out, "memory").counts.get("memory", {})
    return {"statements": counts.get("statements"), "entities": counts.get("entities")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_synthesis"))
    parser.add_argument("--mb-per-task", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1, help="tasks run at once (one per core)")
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=ALL_STAGES,
        default=list(ALL_STAGES),
        help="the stages to run, in pipeline order (default: all)",
    )
    parser.add_argument(
        "--sample-tasks",
        type=int,
        default=0,
        help="run only this many tasks of each stage, spread over the ranks (again, when an "
        "earlier run finished them), and scale their CPU seconds to all tasks",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every stage of the run (e.g. environment.search_shards=2); "
        "give the same ones to every invocation on a run, since they are part of its fingerprint",
    )
    args = parser.parse_args()
    stages = [s for s in ALL_STAGES if s in args.stages]
    results = []
    for size in args.sizes_mb:
        results.append(
            bench(size, args.work, args.mb_per_task, stages, args.jobs, args.sample_tasks, args.set)
        )
        (args.work / "results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results[-1]), flush=True)
    print("| input | stages | documents | tasks | CPU s | docs/s/core | max RSS/task MB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['megabytes']} MB | {r['stages_run'][0]}..{r['stages_run'][-1]} | "
            f"{r['documents']:,} | {r['tasks']} | {r['seconds']} | "
            f"{r['documents_per_s_per_core']} | {r['max_task_rss_mb']} |"
        )
    print("\n| input | " + " | ".join(stages) + " |  (CPU s / max RSS per task MB)")
    print("|---|" + "---|" * len(stages))
    for r in results:
        cells = [r["stages"].get(s) for s in stages]
        text = [f"{c['seconds']} / {c['max_task_rss_mb']}" if c else "-" for c in cells]
        print(f"| {r['megabytes']} MB | " + " | ".join(text) + " |")
    folders = sorted({folder for r in results for folder in r["disk"]})
    print(
        "\n| folder | " + " | ".join(f"{r['megabytes']} MB" for r in results) + " |  (MB / files)"
    )
    print("|---|" + "---|" * len(results))
    for folder in folders:
        cells = [r["disk"].get(folder) for r in results]
        text = [f"{c['mb']} / {c['files']:,}" if c else "-" for c in cells]
        print(f"| {folder} | " + " | ".join(text) + " |")


if __name__ == "__main__":
    main()
