"""Dedup and finalize at a larger size, on copies of a smaller benchmark run's documents (CPU).

    python benchmarks/bench_dedup_copies.py --from-mb 10 --copies 100 --jobs 2 --work /tmp/bench_dedup

Why: measuring dedup and finalize on a 1 GB run's own documents needs every 1 GB task before
them first, about 5 hours of this 2-core machine: more than a session here has, and a run's
folder does not outlive its machine (the every-task 1 GB run of docs/benchmarks.md lost its
folder with 50 of has's 200 tasks done). The two stages read only what the stages before them
wrote: the documents (docs/<stage>/pP.jsonl.zst), the stages' counters and the held-out
questions. So this

1. runs (or resumes) benchmarks/bench_synthesis.py's run of `--from-mb`, every stage;
2. writes a run `--copies` times its size beside it: its partition p + P*j (P partitions) is
   copy j of partition p, with every copy code of the benchmark corpus renamed to the code a
   corpus `--copies` times larger gives that copy (copy k of the K copies becomes copy
   k + K*j, as `make_corpus` names them), each document's id made unique, and the counters
   copied likewise (the summary counts the copies);
3. measures the dedup and finalize jobs of both runs as bench_synthesis does (CPU seconds,
   largest process's peak RSS; each finished job's measures kept in its run folder, so a rerun
   of the command resumes).

What the copies do not reproduce: `make_corpus` shifts copy k's numbers by k mod 97, and a
copy here keeps the numbers of its source, so copy j of a document differs from it only by
its codes (in a real corpus of that size, copies k and k + 97 do too). Prints a Markdown table
and writes WORK/results_copies.json.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_synthesis import (  # noqa: E402
    _CODE_LETTERS,
    ALL_STAGES,
    Measures,
    _cli,
    _code,
    _forget_job,
    _row,
    _run_tasks,
    bench,
    run_paths,
)
from data_synthesis.__main__ import BUNDLED_CORPUS  # noqa: E402
from data_synthesis.engine.io import count_lines, iter_jsonl, write_jsonl  # noqa: E402

_CODE = re.compile(rf"\b[Qq][{_CODE_LETTERS}{_CODE_LETTERS.lower()}]+\b")
COPIED = ("docs", "counters", "eval/heldout_questions")  # what dedup and finalize read
CHUNK = 10  # copies written by one process from one reading of its source file


def code_index(code: str) -> int:
    """The copy k whose code is `code`: the inverse of bench_synthesis._code."""
    k = 0
    for letter in code[1:].upper():
        k = k * len(_CODE_LETTERS) + _CODE_LETTERS.index(letter) + 1
    return k - 1


def renamer(shift: int):
    """re.sub's replacement: a code moved `shift` copies on, in the case it was written in
    (the entity keys of the memory and the question ids are lower case)."""

    def rename(match: re.Match) -> str:
        code = _code(code_index(match.group(0)) + shift)
        return code.lower() if match.group(0).islower() else code

    return rename


def _target(source: Path, j: int, per_copy: int) -> str:
    """pP.jsonl[.zst] or tN.json of copy j: its number moved on by j copies' worth of files."""
    stem, _, rest = source.name.partition(".")
    return f"{stem[0]}{int(stem[1:]) + per_copy * j:05d}.{rest}"


@dataclass(frozen=True)
class CopyJob:
    """Copies `js` of the document file `source` into `folder`: copy j's file is numbered
    `per_copy * j` on (the source's folder holds `per_copy` files), its codes moved
    `shift * j` copies on (the source corpus holds `shift` copies)."""

    source: Path
    folder: Path
    per_copy: int
    js: tuple[int, ...]
    shift: int


def _copy_documents(job: CopyJob) -> None:
    """Write a CopyJob's copies: the source read once, each copy written atomically; a copy a
    killed earlier run finished is kept."""
    lines = None
    for j in job.js:
        target = job.folder / _target(job.source, j, job.per_copy)
        if target.exists():
            continue
        if lines is None:
            lines = [json.dumps(record, ensure_ascii=False) for record in iter_jsonl(job.source)]
        rename = renamer(job.shift * j)
        write_jsonl(target, (_copy_record(line, rename, j) for line in lines))


def _copy_record(line: str, rename, j: int) -> dict:
    record = json.loads(_CODE.sub(rename, line))
    if "id" in record:  # unique also where it held no code ("001 he/factual")
        record["id"] = f"{record['id']}/copy{j}"
    return record


def copy_run(source: Path, target: Path, copies: int, source_copies: int, jobs: int) -> None:
    """Write `target` from `source` as the module docstring says (copy 0 holds the source's
    documents as they are but for their ids' suffix)."""
    items, counters = [], []
    for part in COPIED:
        for folder in sorted({f.parent for f in (source / part).rglob("*") if f.is_file()}):
            files = sorted(f for f in folder.iterdir() if f.is_file() and f.name[1:6].isdigit())
            into = target / folder.relative_to(source)
            into.mkdir(parents=True, exist_ok=True)
            if part == "counters":
                counters += [
                    (f, into / _target(f, j, len(files))) for f in files for j in range(copies)
                ]
                continue
            for f in files:
                for start in range(0, copies, CHUNK):
                    js = tuple(range(start, min(start + CHUNK, copies)))
                    items.append(CopyJob(f, into, len(files), js, source_copies))
    for src, dst in counters:
        shutil.copyfile(src, dst)
    with ProcessPoolExecutor(jobs) as pool:
        list(pool.map(_copy_documents, items))


def measure_jobs(out: Path, corpus: Path, partitions: int, jobs: int) -> dict:
    """dedup's and finalize's rows of the run `out` (bench_synthesis's commands and measures)."""
    measures, rows = Measures(out), {}
    with ThreadPoolExecutor(1) as pool:
        for stage in ("dedup", "finalize"):
            if not measures.get(stage, None):
                _forget_job(out, stage)
            command = [*_cli(stage, corpus, out, partitions, None, []), "--workers", str(jobs)]
            rows[stage] = _row(_run_tasks(pool, stage, {None: command}, measures))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from-mb", type=int, default=10)
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--mb-per-task", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="processes at once (one per core)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_dedup"))
    args = parser.parse_args()
    small = bench(args.from_mb, args.work, args.mb_per_task, list(ALL_STAGES), args.jobs)
    corpus, source = run_paths(args.work, args.from_mb)
    source_copies = math.ceil(small["documents"] / count_lines(BUNDLED_CORPUS))
    target = source.with_name(f"{source.name}_x{args.copies}")
    copy_run(source, target, args.copies, source_copies, args.jobs)
    partitions = small["tasks"] * args.copies
    large = measure_jobs(target, corpus, partitions, args.jobs)
    stats = {
        name: json.loads((run / "final" / "stats.json").read_text())
        for name, run in (("source", source), ("copies", target))
    }
    result = {
        "from_mb": args.from_mb,
        "copies": args.copies,
        "partitions": [small["tasks"], partitions],
        "source": {s: small["stages"][s] for s in ("dedup", "finalize")},
        "copied": large,
        "documents_in": {k: _documents_in(v) for k, v in stats.items()},
        "documents_kept": {k: sum(v["documents_by_kind"].values()) for k, v in stats.items()},
        "near_duplicates": {k: v["rejects"]["dedup"]["near duplicate"] for k, v in stats.items()},
    }
    (args.work / "results_copies.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)
    _table(result)


def _documents_in(stats: dict) -> int:
    """The documents dedup read: every kind the stages wrote (their counters' "out")."""
    return sum(
        stats["counts"].get(stage, {}).get("out", 0) for stage in ("planning", "reasoning", "has")
    )


def _table(result: dict) -> None:
    small, large = f"{result['from_mb']} MB", f"{result['from_mb']} MB x {result['copies']}"
    docs = result["documents_in"]
    print(
        f"| stage | {small}: CPU s / largest process MB | {large}: CPU s / largest process MB "
        "| CPU per document | largest process |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for stage in ("dedup", "finalize"):
        a, b = result["source"][stage], result["copied"][stage]
        per_doc = (b["seconds"] / docs["copies"]) / (a["seconds"] / docs["source"])
        rss = b["max_task_rss_mb"] / a["max_task_rss_mb"]
        print(
            f"| {stage} | {a['seconds']} / {a['max_task_rss_mb']} | {b['seconds']} / "
            f"{b['max_task_rss_mb']} | {per_doc:.2f}x | {rss:.2f}x |"
        )


if __name__ == "__main__":
    main()
