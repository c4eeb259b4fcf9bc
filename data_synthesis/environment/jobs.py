"""The search index build (environment/build.py) as datatrove jobs, so a corpus too large for one
process is indexed by a cluster.

    index_read    a task per shard   the shard's lines -> passages, pages, sorted postings runs
    index_count   one task           every shard's term counts -> the corpus's (df.table.npy)
    index_write   a task per shard   runs -> bm25s arrays scored with the corpus's statistics
    index_finish  one task           stats.json; the build directory renamed into place

The synthesis runner (engine/runner.py) puts these jobs before the planning and has stages when
their environment's index is not built yet: one after the other on the local executor, or as
SLURM job arrays chained with afterok. `python -m data_synthesis.environment index CORPUS
--shards N --workers W` runs them on this machine. Each step skips what is already done and
writes through temporary names, so datatrove's own completion markers are not needed (the
jobs run with `skip_completed=False`: an index deleted from the cache is rebuilt).
"""

from __future__ import annotations

from typing import Literal

from datatrove.pipeline.base import PipelineStep

from data_synthesis.environment.build import (
    Build,
    count_terms,
    dropped_on_corpus_error,
    finish,
    read_shard,
    write_shard,
)

Phase = Literal["read", "count", "write", "finish"]


class IndexStep(PipelineStep):
    """One task of one phase of an index build."""

    type = "🔎 - INDEX"

    def __init__(self, phase: Phase, build: Build):
        self.name = f"index {phase}"  # before PipelineStep names its stats after it
        super().__init__()
        self.phase, self.build = phase, build

    def run(self, data, rank: int = 0, world_size: int = 1):
        with self.track_time("task"):
            if self.phase == "read":
                # a bad corpus line fails the task and removes the build, here in the task: on
                # SLURM no local process is left to do it, and the fixed corpus is another build
                with dropped_on_corpus_error(self.build):
                    read_shard(self.build, rank)
            elif self.phase == "count":
                count_terms(self.build)
            elif self.phase == "write":
                write_shard(self.build, rank)
            else:
                finish(self.build)


def index_jobs(build: Build, prefix: str = "index") -> list[tuple[str, list, int]]:
    """(job name, datatrove pipeline, task count) of each phase, in order."""
    tasks = {"read": build.shards, "count": 1, "write": build.shards, "finish": 1}
    return [(f"{prefix}_{phase}", [IndexStep(phase, build)], n) for phase, n in tasks.items()]
