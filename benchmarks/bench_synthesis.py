"""Synthesis engine throughput and memory at 10 MB, 100 MB, 1 GB of text (CPU heuristic baseline).

    python benchmarks/bench_synthesis.py --sizes-mb 10 100 [1000] --work /tmp/bench_synth

The input is the bundled corpus repeated with new entity names: copy k renames every title
entity (and its mentions in all documents of the copy) to "<title> <k-code>" and changes the
numbers, so copies are new entities and statements, not duplicates. Each stage's tasks run one by
one as separate processes (`--rank R`), so the peak RSS measured (os.wait4, benchmarks/measure.py)
is one task's own; map tasks and partitions grow with the input (one per `--mb-per-task` MB), so
the RSS per task should stay flat while the total time grows linearly. Prints a Markdown table
and writes it, with the per-stage timings, to WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import run_measured  # noqa: E402
from data_synthesis.__main__ import BUNDLED_CORPUS  # noqa: E402

STAGES_BY_RANK = ("extract", "memory", "questions", "planning", "reasoning", "has")


def _code(k: int) -> str:
    letters = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        letters = chr(65 + r) + letters
    return letters


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


def _cli(stage: str, corpus: Path, out: Path, tasks: int, rank: int | None) -> list[str]:
    command = [sys.executable, "-m", "data_synthesis", stage, "--input", str(corpus)]
    command += ["--output", str(out), "--tasks", str(tasks), "--partitions", str(tasks)]
    return command + (["--rank", str(rank)] if rank is not None else [])


def bench(megabytes: int, work: Path, mb_per_task: int, through: str) -> dict:
    corpus = work / f"corpus_{megabytes}mb.jsonl"
    documents = make_corpus(corpus, megabytes)
    tasks = max(1, math.ceil(megabytes / mb_per_task))
    out = work / f"run_{megabytes}mb"
    stages, total = {}, 0.0
    ranked = STAGES_BY_RANK[: STAGES_BY_RANK.index(through) + 1] if through != "all" else None
    for stage in ranked or STAGES_BY_RANK:
        runs = [run_measured(_cli(stage, corpus, out, tasks, r)) for r in range(tasks)]
        stages[stage] = {
            "seconds": round(sum(r.seconds for r in runs), 1),
            "max_task_rss_mb": round(max(r.peak_rss_mb for r in runs), 1),
        }
        total += sum(r.seconds for r in runs)
    for stage in () if ranked else ("dedup", "finalize"):
        measured = run_measured(_cli(stage, corpus, out, tasks, None))
        stages[stage] = {
            "seconds": round(measured.seconds, 1),
            "max_task_rss_mb": round(measured.peak_rss_mb, 1),
        }
        total += measured.seconds
    summary = _summary(out) if ranked else json.loads((out / "final/stats.json").read_text())
    return {
        "stages_run": list(stages),
        "megabytes": megabytes,
        "documents": documents,
        "tasks": tasks,
        "seconds": round(total, 1),
        "documents_per_s_per_core": round(documents / total, 2),
        "max_task_rss_mb": max(s["max_task_rss_mb"] for s in stages.values()),
        "stages": stages,
        "summary": {k: summary.get(k) for k in ("statements", "entities", "documents_by_kind")},
    }


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
    parser.add_argument(
        "--through",
        choices=[*STAGES_BY_RANK, "all"],
        default="all",
        help="stop after this stage (the stages that read the raw corpus: extract, memory, "
        "questions)",
    )
    args = parser.parse_args()
    results = []
    for size in args.sizes_mb:
        results.append(bench(size, args.work, args.mb_per_task, args.through))
        (args.work / "results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results[-1]), flush=True)
    print("| input | stages | documents | tasks | s (1 core) | docs/s/core | max RSS/task MB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['megabytes']} MB | {r['stages_run'][0]}..{r['stages_run'][-1]} | "
            f"{r['documents']:,} | {r['tasks']} | {r['seconds']} | "
            f"{r['documents_per_s_per_core']} | {r['max_task_rss_mb']} |"
        )


if __name__ == "__main__":
    main()
