"""Preemption: SIGTERM or SIGUSR1 makes the trainer save after the current step and exit, and
the save must survive the signal.

`StopSignal` records the signal (the loop asks `on_any_rank()` after each step, so that every rank
stops after the same step) and shields megatron-core's checkpoint-writer helper from it:

megatron-core 0.19's torch_dist save collects its write results through a multiprocessing
Manager queue (`filesystem_async.get_write_results_queue`), whose server process is spawned at
the first save as a child of the worker, in the worker's process group. torchrun delivers a
signal to each worker with `os.killpg`, so SIGTERM/SIGUSR1 also reached that server, which died
of it; the preemption save then failed with BrokenPipeError, leaving `.iter_N.partial` behind
(issue 19.1). `shield_checkpoint_writer` starts that Manager itself, before any save, with the
stop signals ignored, and hands its queue to megatron-core. The server stays in the worker's
process group, so torchrun's final SIGKILL still reaches it, and it exits when the worker is gone.

`record_exit` tells the launcher that the run ended cleanly (final save published): torchrun
itself exits non-zero whenever it was signalled, so launch/common.sh reads this record
(MEGATRON_AGENTIC_EXIT_FILE) to tell "stopped and saved" from "save lost".
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
EXIT_FILE_ENV = "MEGATRON_AGENTIC_EXIT_FILE"
_manager = None  # the shielded Manager (kept alive with the process)


class StopSignal:
    """SIGTERM/SIGUSR1 (SLURM preemption, scancel, torchrun shutdown) ask the loop to save and
    exit after the current step."""

    def __init__(self, shield_writer: bool = True):
        self.requested: str | None = None  # the name of the signal received
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        if shield_writer:
            shield_checkpoint_writer()

    def _handle(self, signum, frame):
        self.requested = signal.Signals(signum).name

    def on_any_rank(self) -> bool:
        """Whether any rank got the signal: every rank must stop after the same step, and the
        signal reaches them at slightly different times (a collective: all ranks call it)."""
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        flag = torch.tensor([int(self.requested is not None)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())


def shield_checkpoint_writer() -> None:
    """Start megatron-core's write-results Manager with the stop signals ignored (see the module
    docstring). Idempotent; a no-op if megatron-core already made its own."""
    global _manager
    import multiprocessing

    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if getattr(filesystem_async, "_results_queue", None) is not None:
        return
    from multiprocessing.managers import SyncManager

    manager = SyncManager(ctx=multiprocessing.get_context("spawn"))  # megatron-core's context
    manager.start(initializer=_writer_server_init, initargs=(os.getpid(),))
    filesystem_async._results_queue = manager.Queue()
    _manager = manager


def _writer_server_init(parent_pid: int) -> None:
    """In the Manager's server process: ignore the stop signals, and exit once the worker that
    started it is gone (it no longer dies of SIGTERM with it)."""
    for sig in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)

    def watch_parent():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()


def record_exit(iteration: int, saved_to: str | None) -> None:
    """After a clean end of training (final save published): write one line to the file the
    launcher named in MEGATRON_AGENTIC_EXIT_FILE (local rank 0 of each node, so that every
    node's launcher sees it). Does nothing outside the launch scripts."""
    path = os.environ.get(EXIT_FILE_ENV)
    if not path or os.environ.get("LOCAL_RANK", "0") != "0":
        return
    where = f"checkpoint at iteration {iteration} in {saved_to}" if saved_to else "no checkpoint"
    Path(path).write_text(f"stopped cleanly at iteration {iteration}; {where}\n")
