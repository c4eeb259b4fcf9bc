"""Multi-process tests: `run_distributed` runs a function on real gloo ranks.

On CPU, children come from a forkserver that has megatron-core imported already, so each test pays
the import once per session instead of once per rank. On a GPU they are spawned.
"""

from __future__ import annotations

from megatron_agentic.local_ranks import free_port, run_on_ranks

__all__ = ["free_port", "run_distributed"]

_PRELOAD = ["torch", "megatron.core", "megatron_agentic.parallel", "megatron_agentic.train_step"]


def run_distributed(fn, world_size: int = 2, *args, timeout: float = 180.0) -> list:
    """Run `fn(*args)` on `world_size` ranks; return the per-rank results, rank order."""
    import torch

    if torch.cuda.is_available():  # the preloaded imports touch CUDA, which a forked child cannot
        return run_on_ranks(fn, world_size, *args, timeout=timeout)  # use: fresh (spawned) ranks
    return run_on_ranks(
        fn, world_size, *args, timeout=timeout, start_method="forkserver", preload=_PRELOAD
    )
