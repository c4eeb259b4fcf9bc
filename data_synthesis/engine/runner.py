"""Runs the stage table on datatrove executors: local by default, SLURM for clusters.

Run directory (OUT):
    run.json                     fingerprint of inputs + config (a mismatching rerun refuses)
    logs/<job>/                  datatrove logs, per-task completion markers, stats (time and
                                 counters of every task, merged in stats.json)
    checkpoints/<stage>/         finished batches of running tasks (removed when a task ends)
    requests/<stage>/            finished LLM requests of each running task (replayed after a
                                 kill; removed with the checkpoint when it ends)
    counters/<stage>/tNNNNN.json each task's counts and reject reasons
    memory/ questions/ docs/     stage outputs (see data_synthesis/stages.py); questions and
                                 documents as pP.jsonl.zst
    dedup/                       MinHash signatures, buckets, clusters, removed documents
    final/fas/ final/has/        the training documents, a zstd shard per dedup filter task
    final/stats.json             the summary (and, for a small run, final/{fas,has}.jsonl)

Each stage is one datatrove job (the dedup stage is four; the first of planning and has is
preceded by the four jobs that build its search index when that is not built yet, in shards:
environment/jobs.py) whose tasks are independent; datatrove
marks finished tasks and skips them on a rerun, our checkpoints resume the unfinished ones.
Locally the jobs run one after the other; on SLURM they are submitted at once as job arrays
chained with afterok dependencies (engine/slurm.py).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from data_synthesis.config import PipelineConfig
from data_synthesis.engine import memory_store, tasks
from data_synthesis.engine.dedup import dedup_jobs
from data_synthesis.engine.fingerprint import check_or_record, run_identity
from data_synthesis.engine.io import InputFile, describe, input_files
from data_synthesis.engine.progress import JobProgress, LocalExecutor
from data_synthesis.engine.summary import check_stage, finalize
from data_synthesis.environment.build import Build, dropped_on_corpus_error
from data_synthesis.environment.executor import EnvironmentConfig
from data_synthesis.environment.jobs import IndexStep, index_jobs
from data_synthesis.stage_api import Counters
from data_synthesis.stages import SPEC, STAGES

AUTO_BYTES_PER_TASK = 64 << 20


class StageStep(PipelineStep):
    """A datatrove step that runs one task of one synthesis stage. Its datatrove stats (the
    "Stats" datatrove prints, logs/<stage>/stats.json) carry the task's time and counters:
    counts as "<group>: <name>", reject reasons as "rejected (<group>): <reason>"."""

    type = "🧪 - SYNTHESIS"

    def __init__(self, stage: str, plan: tasks.RunPlan):
        self.name = f"synthesis {stage}"  # before PipelineStep names its stats after it
        super().__init__()
        self.stage, self.plan = stage, plan

    def run(self, data, rank: int = 0, world_size: int = 1):
        with self.track_time("task"):
            if self.stage == "extract":
                tasks.run_extract(self.plan, rank, world_size)
            elif self.stage == "memory":
                tasks.run_memory(self.plan, rank, world_size)
            elif self.stage == "value_index":
                tasks.run_value_index(self.plan, rank, world_size)
            elif self.stage == "finalize":
                finalize(self.plan)
            else:
                tasks.run_partition_stage(self.plan, self.stage, rank, world_size)
        grouped = SPEC[self.stage].tasks == "partition_tasks"
        keys = tasks.partitions_of(self.plan, rank) if grouped else [rank]
        self._report([tasks.counters_file(self.plan, self.stage, key) for key in keys])

    def _report(self, files: list[Path]) -> None:
        """The task's counters (of each partition it covers) as datatrove stats."""
        counted = Counters()
        for path in files:
            if path.exists():  # finalize has none: its summary is final/stats.json
                counted.merge(Counters.from_dict(json.loads(path.read_text())))
        for group, counts in counted.counts.items():
            for name, value in counts.items():
                self.stat_update(f"{group}: {name}", value=value, unit="task")
        for group, reasons in counted.rejects.items():
            for reason, value in reasons.items():
                self.stat_update(f"rejected ({group}): {reason}", value=value, unit="task")


def make_plan(
    config: PipelineConfig,
    out: str | Path,
    inputs,
    trajectories: str | None = None,
    config_path: str | None = None,
) -> tasks.RunPlan:
    """Resolve task and partition counts and check the run's fingerprint."""
    files = input_files(inputs)
    described = describe(files)  # a compressed file's text, estimated
    total = sum(f.text for f in described)
    auto = max(1, math.ceil(total / AUTO_BYTES_PER_TASK))
    map_tasks = config.engine.tasks or auto
    partitions = config.engine.partitions or auto
    if config.engine.partition_tasks < 0:
        raise ValueError(f"engine.partition_tasks: >= 0, got {config.engine.partition_tasks}")
    partition_tasks = min(config.engine.partition_tasks or partitions, partitions)
    index_partitions = _index_partitions(config.engine.index_partitions, partitions)
    _warn_model_loads(config, map_tasks, partition_tasks)
    _warn_whole_files(described, map_tasks)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = run_identity(
        config,
        described,
        map_tasks,
        {
            "partitions": partitions,
            "index_partitions": index_partitions,
            "memory_format": memory_store.FORMAT,
            "outputs_format": tasks.OUTPUTS_FORMAT,
            "trajectories": trajectories,
            "environment": _environment_identity(config),
        },
    )
    check_or_record(out, identity)
    return tasks.RunPlan(
        out=str(out.resolve()),
        inputs=tuple(described),
        config=config,
        map_tasks=map_tasks,
        partitions=partitions,
        index_partitions=index_partitions,
        partition_tasks=partition_tasks,
        trajectories=trajectories,
        config_dir=str(Path(config_path).resolve().parent) if config_path else None,
    )


MAX_INDEX_PARTITIONS = 1024


def _index_partitions(wanted: int | None, partitions: int) -> int:
    """The value_index stage's partitions (engine.index_partitions): as many as the memory's
    up to MAX_INDEX_PARTITIONS. Its tasks each read a range of every reduce task's files, so
    the stage's opens grow as partitions x index_partitions; at the 1 TB plan's 16,384
    partitions 1,024 tasks each merge about 1 GiB of rows in ~322 MB (docs/benchmarks.md)."""
    if wanted is not None and wanted < 1:
        raise ValueError(f"engine.index_partitions: >= 1, got {wanted}")
    return wanted or min(partitions, MAX_INDEX_PARTITIONS)


def _warn_whole_files(files: list[InputFile], map_tasks: int) -> None:
    """A compressed input is read whole by one map task, a parquet row group too (engine/io.py):
    say so when one holds more than twice a task's share of the input's text, which leaves the
    other tasks idle."""
    share = sum(f.text for f in files) / map_tasks
    large = [(f.whole, f.path) for f in files if f.whole > 2 * share]
    if large:
        size, path = max(large)
        print(
            f"warning: {len(large)} input file(s) hold a piece one task reads whole (a "
            "compressed file, a parquet row group) larger than twice a map task's share of the "
            f"text ({share / 2**20:,.0f} MiB of {map_tasks} tasks), the largest in {path} "
            f"(~{size / 2**20:,.0f} MiB of text), so the map stage waits for it: split such a "
            "file into smaller ones (or decompress it), write parquet in smaller row groups",
            file=sys.stderr,
        )


MANY_MODEL_LOADS = 256


def _warn_model_loads(config: PipelineConfig, map_tasks: int, partition_tasks: int) -> None:
    """An in-process LLM engine (vllm, transformers) loads its model once per task: say so
    when a stage would load it more than MANY_MODEL_LOADS times (the task counts default to
    one per 64 MiB of input: 16,384 at 1 TB)."""
    if config.backend.type not in ("vllm", "transformers"):
        return
    for key, count in (("engine.tasks", map_tasks), ("engine.partition_tasks", partition_tasks)):
        if count > MANY_MODEL_LOADS:
            print(
                f"warning: {key} is {count}: each task loads the {config.backend.type} model "
                f"once, {count} loads per stage; fewer, larger tasks load it less (the 1 TB "
                "plan in docs/data_synthesis.md: engine.tasks 1024, engine.partition_tasks 256)",
                file=sys.stderr,
            )


def jobs_for(plan: tasks.RunPlan, stage: str, indexes: set | None = None) -> list:
    """(job name, datatrove pipeline, task count) of one stage. The planning and has stages
    search their environment's corpora: when the index of those is not built yet (and not in
    `indexes`, the builds already scheduled), its build jobs (environment/jobs.py) come first,
    so a cluster builds it in shards instead of every task building it alone."""
    count = {
        "map": plan.map_tasks,
        "partitions": plan.partitions,
        "index_partitions": plan.index_partitions,
        "partition_tasks": plan.partition_tasks,
        "one": 1,
    }
    if SPEC[stage].tasks == "dedup":
        return dedup_jobs(plan.root, plan.config, plan.partitions)
    jobs = []
    if stage in ("planning", "has"):
        builds = _index_builds(plan)
        plan = dataclasses.replace(plan, indexes=tuple((k, str(b.directory)) for k, b in builds))
        for _, build in builds if indexes is not None else ():
            if build.directory not in indexes and not (build.directory / "stats.json").exists():
                indexes.add(build.directory)
                name = f"index_{len(indexes) - 1}" if len(indexes) > 1 else "index"
                jobs += index_jobs(build, name)
    return [*jobs, (stage, [StageStep(stage, plan)], count[SPEC[stage].tasks])]


def _environment_identity(config) -> dict:
    """The environment the run's searches use, its defaults filled in: a rerun after the defaults
    changed (2 index shards of 16 MiB per question since 2026-12-05, 4 of 8 GiB before) is
    refused instead of searching one way in its old tasks and another in its new ones. Where
    indexes are cached is not part of it."""
    settings = dataclasses.asdict(EnvironmentConfig.from_dict(config.environment))
    for key in ("cache_dir", "corpora"):  # where, not what; the corpora are the inputs unless set
        settings.pop(key)
    return settings


@functools.lru_cache(maxsize=4)  # the planning and has stages search the same corpora
def _index_builds(plan: tasks.RunPlan) -> list[tuple[tuple[str, ...], Build]]:
    """The index builds the run's environment searches (its corpora and scholar corpora), each
    with its corpora as the environment's config lists them: the tasks open each index in the
    directory named here instead of naming it again (`CorpusIndex.open`)."""
    config = EnvironmentConfig.from_dict({"corpora": plan.input_paths, **plan.config.environment})
    index_config = config.index_config()
    known = {f.path: f for f in plan.inputs}  # described when the run was planned
    return [
        (
            tuple(corpora),
            Build.named([Path(os.path.abspath(c)) for c in corpora], index_config, known),
        )
        for corpora in filter(None, (config.corpora, config.scholar_corpora))
    ]


def _local(plan, name, pipeline, n, rank: int | None, verbose: bool = False):
    return LocalExecutor(
        skip_completed=not name.startswith("index"),  # index steps skip their own finished work
        pipeline=pipeline,
        tasks=n,
        workers=min(plan.config.engine.workers, n),
        logging_dir=str(plan.root / "logs" / name),
        local_tasks=1 if rank is not None else -1,
        local_rank_offset=rank or 0,
        start_method="fork",
        verbose=verbose,
    )


def run_local(
    plan: tasks.RunPlan, stages=STAGES, rank: int | None = None, verbose: bool = False
) -> None:
    """Run stages one after the other on this machine; a stage that yields nothing stops the
    run with an error naming it. The console shows each job's progress (engine/progress.py);
    `verbose` adds datatrove's own lines, which are in the task logs either way."""
    indexes = set() if rank is None else None  # one task of a stage: it opens the index itself
    for stage in stages:
        started = time.monotonic()
        for name, pipeline, n in jobs_for(plan, stage, indexes):
            print(f"[data_synthesis] {name}: {n} task(s)", file=sys.stderr, flush=True)
            step = pipeline[0]
            completions = plan.root / "logs" / name / "completions"
            with (
                dropped_on_corpus_error(step.build)
                if isinstance(step, IndexStep)
                else nullcontext(),
                JobProgress(name, completions, n if rank is None else 1),
            ):
                _local(plan, name, pipeline, n, rank, verbose).run()
        if rank is None:
            check_stage(plan, stage)
        print(
            f"[data_synthesis] {stage} done in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
            flush=True,
        )
