"""A local run's console: each job's progress over its tasks with an ETA, and datatrove's own
lines kept in the task logs.

Each task shows its own tqdm bar (engine/tasks.py), but a stage of 200 tasks on a few workers
needs the stage's ETA too. datatrove marks every finished task in `logs/<job>/completions/`;
`JobProgress` watches that folder from a thread of the launching process and prints a line
whenever tasks finish (at most every `interval` seconds, always at the end):

    [data_synthesis] planning: 37/200 tasks (18%), 0:06:10 elapsed, ETA 0:27:10

The ETA extrapolates from the tasks finished in this run (a rerun's already finished tasks
count as done but not toward the rate). On SLURM, `python -m datatrove.tools.jobs_status
OUT/logs` shows the same counts.

`LocalExecutor` is datatrove's local executor with these lines in front: datatrove prints a
banner, the pipeline and the stats of every task on the console (548 lines for the bundled
corpus, hundreds per stage at 1 GB), which buried the progress lines. Each task's full log stays
in `logs/<job>/logs/task_NNNNN.log` and the job's summed stats in `logs/<job>/stats.json`; the
console gets errors only. `--verbose` gives back datatrove's console.
"""

from __future__ import annotations

import datetime
import sys
import threading
import time
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from loguru import logger


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class JobProgress:
    """Prints `name`'s finished tasks out of `total` from its completion marks in `folder`."""

    def __init__(self, name: str, folder: Path, total: int, interval: float = 30.0, out=None):
        self.name, self.folder, self.total, self.interval = name, Path(folder), total, interval
        self.out = out or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def done(self) -> int:
        return len(list(self.folder.iterdir())) if self.folder.is_dir() else 0

    def line(self, done: int, elapsed: float) -> str:
        share = f"{done}/{self.total} tasks ({100 * done // max(self.total, 1)}%)"
        finished = done - self._first
        if done >= self.total or finished <= 0:
            eta = "" if done >= self.total else ", ETA unknown"
        else:
            eta = f", ETA {_clock(elapsed / finished * (self.total - done))}"
        return f"[data_synthesis] {self.name}: {share}, {_clock(elapsed)} elapsed{eta}"

    def __enter__(self) -> JobProgress:
        self._started, self._first = time.monotonic(), self.done()
        if self.total > 1:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.total > 1:
            self._stop.set()
            self._thread.join()
            if exc[0] is None:
                self._print(self.done())

    def _print(self, done: int) -> None:
        print(self.line(done, time.monotonic() - self._started), file=self.out, flush=True)

    def _watch(self) -> None:
        shown, last = self._first, time.monotonic()
        while not self._stop.wait(1.0):
            done = self.done()
            if done != shown and time.monotonic() - last >= self.interval and done < self.total:
                self._print(done)
                shown, last = done, time.monotonic()


class LocalExecutor(LocalPipelineExecutor):
    """datatrove's LocalPipelineExecutor whose tasks log to their files and to the console only
    errors (datatrove's own treatment of every worker slot but the first), and whose executor
    lines (skipped tasks, the job's summed stats) are left out; `verbose=True` is datatrove's
    own console."""

    def __init__(self, *args, verbose: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.verbose = verbose

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        quiet = local_rank if self.verbose else max(local_rank, 1)
        return super()._run_for_rank(rank, quiet, node_rank)

    def run(self):
        if self.verbose:
            return super().run()
        logger.disable("datatrove.executor.local")
        try:
            return super().run()
        finally:
            logger.enable("datatrove.executor.local")
