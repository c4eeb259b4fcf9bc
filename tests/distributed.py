"""Run a function on several real torch.distributed ranks (gloo) in child processes.

Children come from a forkserver that has megatron-core imported already, so each test pays the
import once per session instead of once per rank. A failure on any rank is raised in the test with
that rank's traceback; a rank that hangs fails the test after `timeout` seconds.
"""

from __future__ import annotations

import os
import socket
import traceback

import torch.multiprocessing as mp

_PRELOAD = ["torch", "megatron.core", "megatron_agentic.parallel", "megatron_agentic.train_step"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(fn, rank, world_size, port, args, results):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size),
        OMP_NUM_THREADS="1",
    )  # fmt: skip
    import torch

    torch.set_num_threads(1)
    try:
        results.put((rank, True, fn(*args)))
    except BaseException:  # noqa: BLE001 - reported to the parent test
        results.put((rank, False, traceback.format_exc()))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run_distributed(fn, world_size: int = 2, *args, timeout: float = 180.0) -> list:
    """Run `fn(*args)` on `world_size` ranks; return the per-rank results, rank order."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_rank_main, args=(fn, rank, world_size, port, args, results))
        for rank in range(world_size)
    ]
    for proc in procs:
        proc.start()
    collected = {}
    try:
        for _ in range(world_size):
            rank, ok, value = results.get(timeout=timeout)
            if not ok:
                raise RuntimeError(f"rank {rank} failed:\n{value}")
            collected[rank] = value
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return [collected[rank] for rank in range(world_size)]
