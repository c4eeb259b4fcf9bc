"""Submitting a run to SLURM: one job array per job of the stage table, chained with afterok.

datatrove's SlurmPipelineExecutor writes each array's sbatch script and submits only the tasks
not marked finished, so running the same command again after a failure resumes the run. Two
things a cluster team would otherwise meet:
- A failed task leaves the jobs after it waiting on a dependency that can never be met
  (`DependencyNeverSatisfied`), in the queue until someone cancels them. Every array is
  submitted with `--kill-on-invalid-dep=yes`, so SLURM removes them.
- A second submission while the first's jobs are still queued or running would run their
  unfinished tasks twice at once, on the same files. Each submission records its jobs' ids in
  `OUT/logs/slurm_jobs.json`; the next one asks `squeue` whether any is still there and, if
  so, refuses and names them.
"""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import sys

from datatrove.executor import SlurmPipelineExecutor

from data_synthesis.engine import tasks
from data_synthesis.engine.io import write_json
from data_synthesis.engine.runner import jobs_for
from data_synthesis.stages import SPEC, STAGES

JOBS_FILE = "slurm_jobs.json"  # under OUT/logs/: the last submission's jobs


def job_array(plan: tasks.RunPlan, name: str, pipeline, n: int, depends, stage: str):
    """A SLURM job array; GPUs only for stages with a method (they may call the LLM)."""
    slurm = plan.config.engine.slurm
    uses_llm = name == stage and SPEC[stage].method is not None  # not its index or dedup jobs
    uses_llm = uses_llm and plan.config.backend.type != "heuristic"
    return SlurmPipelineExecutor(
        skip_completed=not name.startswith("index"),
        pipeline=pipeline,
        tasks=n,
        time=slurm.time,
        partition=slurm.partition,
        cpus_per_task=slurm.cpus_per_task,
        mem_per_cpu_gb=slurm.mem_per_cpu_gb,
        gpus_per_task=slurm.gpus_per_task if uses_llm else 0,
        qos=slurm.qos,
        env_command=slurm.env_command or None,
        job_name=f"synth-{name}",
        logging_dir=str(plan.root / "logs" / name),
        depends=depends,
        max_array_size=slurm.max_array_size,
        mail_type="NONE",
        sbatch_args={"kill-on-invalid-dep": "yes"},
    )


def _job_id(array: SlurmPipelineExecutor) -> str:
    """The id sbatch gave the array ("" when nothing was submitted: every task had finished)."""
    return "" if array.job_id in (None, -1) else str(array.job_id)


def still_queued(plan: tasks.RunPlan) -> dict[str, str]:
    """The last submission's jobs (id -> job name) that SLURM still holds, pending or running."""
    recorded = plan.root / "logs" / JOBS_FILE
    if not recorded.exists():
        return {}
    ids = {str(job["id"]): job["name"] for job in json.loads(recorded.read_text()) if job["id"]}
    if not ids:
        return {}
    if shutil.which("squeue") is None:
        print(
            f"warning: cannot tell whether this run's jobs {', '.join(ids)} are still queued "
            "(no squeue on PATH); if they are, their unfinished tasks will run twice",
            file=sys.stderr,
        )
        return {}
    command = ["squeue", "--noheader", "--format=%F", f"--user={getpass.getuser()}"]
    listed = subprocess.run(command, capture_output=True, text=True, check=False)
    if listed.returncode:
        raise ValueError(f"{' '.join(command)} failed: {listed.stderr.strip()}")
    held = set(listed.stdout.split())
    return {job: name for job, name in ids.items() if job in held}


def submit_slurm(plan: tasks.RunPlan, stages=STAGES) -> list[str]:
    """Submit every stage as a SLURM job array, each depending on the one before; returns one
    line per job: its name, array size, GPUs per task and job id. Refuses (ValueError) while
    the run's last submission still has jobs in the queue."""
    queued = still_queued(plan)
    if queued:
        named = ", ".join(f"{name} ({job})" for job, name in queued.items())
        raise ValueError(
            f"{plan.root}: this run's SLURM jobs {named} are still queued or running; "
            "submitting again would run their unfinished tasks twice. Wait for them, or "
            f"`scancel {' '.join(queued)}`, then submit again."
        )
    previous, arrays, indexes = None, [], set()
    for stage in stages:
        for name, pipeline, n in jobs_for(plan, stage, indexes):
            previous = job_array(plan, name, pipeline, n, previous, stage)
            arrays.append((name, n, previous))
    try:
        previous.run()  # launches the whole chain of dependencies
    finally:  # an sbatch that fails half-way: the arrays it did submit are recorded too
        # job_id: the last array's id when datatrove splits a job (each waits for the one
        # before), -1 when every task of it had finished
        jobs = [{"name": name, "id": _job_id(ex)} for name, _, ex in arrays]
        write_json(plan.root / "logs" / JOBS_FILE, jobs)
    return [
        f"{name}: {n} task(s), {ex.gpus_per_task} GPU(s) each, "
        + (f"job {job['id']}" if job["id"] else "finished before")
        for (name, n, ex), job in zip(arrays, jobs)
    ]
