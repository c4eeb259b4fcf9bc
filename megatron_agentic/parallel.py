"""The parallel layout: its config, its validation, and process-group setup on megatron-core.

`ParallelConfig` names the layout as Megatron-LM users know it (TP, PP, VPP, CP, EP, ETP; DP is
derived from the world size). `validate_layout` rejects impossible layouts with the numbers that
clash, before any process group exists. `initialize` starts torch.distributed (NCCL on GPUs, gloo on
CPU, where `megatron_agentic.cpu_runtime` is installed first) and megatron-core's parallel_state.
"""

from __future__ import annotations

import datetime
import os
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from megatron_agentic import cpu_runtime


@dataclass
class ParallelConfig:
    """Model-parallel layout; the data-parallel size is whatever the world size leaves."""

    tp: int = 1  # tensor parallel (with sequence parallel when > 1)
    pp: int = 1  # pipeline parallel
    vpp: int = 1  # virtual pipeline stages per pipeline rank (interleaved schedule when > 1)
    cp: int = 1  # context parallel (TE's attention on GPUs; cp_attention.py without TE)
    ep: int = 1  # expert parallel
    etp: int = 1  # expert tensor parallel
    # alltoall | allgather | flex (DeepEP/HybridEP); a recipe's typo is refused when it is loaded.
    moe_token_dispatcher: Literal["alltoall", "allgather", "flex"] = "alltoall"
    use_distributed_optimizer: bool = True
    distributed_timeout_minutes: float = 30.0


class LayoutError(ValueError):
    """A parallel layout that cannot work for the model or the world size."""


def validate_layout(
    model, parallel: ParallelConfig, world_size: int, seq_length: int | None = None
):
    """Raise LayoutError naming the numbers if the layout cannot run. Returns the DP size."""
    errors = []

    def need(ok: bool, message: str):
        if not ok:
            errors.append(message)

    for name in ("tp", "pp", "vpp", "cp", "ep", "etp"):
        need(getattr(parallel, name) >= 1, f"{name}={getattr(parallel, name)} must be >= 1")
    if errors:
        raise LayoutError("; ".join(errors))
    tp, pp, vpp, cp, ep, etp = (
        parallel.tp,
        parallel.pp,
        parallel.vpp,
        parallel.cp,
        parallel.ep,
        parallel.etp,
    )
    need(
        model.num_attention_heads % tp == 0,
        f"num_attention_heads={model.num_attention_heads} is not divisible by tp={tp}",
    )
    need(
        model.num_query_groups % tp == 0,
        f"num_query_groups={model.num_query_groups} is not divisible by tp={tp}",
    )
    need(
        model.num_experts % ep == 0, f"num_experts={model.num_experts} is not divisible by ep={ep}"
    )
    need(
        model.moe_ffn_hidden_size % etp == 0,
        f"moe_ffn_hidden_size={model.moe_ffn_hidden_size} is not divisible by etp={etp}",
    )
    need(
        model.num_layers % (pp * vpp) == 0,
        f"num_layers={model.num_layers} is not divisible by pp*vpp={pp}*{vpp}={pp * vpp}",
    )
    need(vpp == 1 or pp > 1, f"vpp={vpp} needs pp > 1 (got pp={pp})")
    need(
        parallel.moe_token_dispatcher in ("alltoall", "allgather", "flex"),
        f"moe_token_dispatcher={parallel.moe_token_dispatcher!r} is not alltoall|allgather|flex",
    )
    attention_world = tp * cp * pp
    need(
        world_size % attention_world == 0,
        f"world size {world_size} is not divisible by tp*cp*pp={tp}*{cp}*{pp}={attention_world}",
    )
    dp = world_size // attention_world if world_size % attention_world == 0 else 0
    expert_world = etp * ep * pp
    need(
        world_size % expert_world == 0,
        f"world size {world_size} is not divisible by etp*ep*pp={etp}*{ep}*{pp}={expert_world}",
    )
    if seq_length is not None:
        split = tp * cp * 2 if cp > 1 else tp
        need(
            seq_length % split == 0,
            f"seq_length={seq_length} is not divisible by "
            + (f"2*cp*tp=2*{cp}*{tp}" if cp > 1 else f"tp={tp}"),
        )
        need(
            seq_length <= model.max_position_embeddings,
            f"seq_length={seq_length} exceeds max_position_embeddings="
            f"{model.max_position_embeddings}",
        )
    if errors:
        raise LayoutError("impossible parallel layout: " + "; ".join(errors))
    return dp


def initialize(parallel: ParallelConfig, seed: int = 1234) -> None:
    """Start torch.distributed (from torchrun's environment) and megatron-core's parallel_state."""
    from megatron.core import parallel_state, tensor_parallel

    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        cpu_runtime.install()
    if not torch.distributed.is_initialized():
        kwargs = process_group_kwargs(parallel, on_gpu)
        if on_gpu:
            torch.cuda.set_device(kwargs["device_id"])
        torch.distributed.init_process_group(**kwargs)
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=parallel.tp,
        pipeline_model_parallel_size=parallel.pp,
        virtual_pipeline_model_parallel_size=parallel.vpp if parallel.vpp > 1 else None,
        context_parallel_size=parallel.cp,
        expert_model_parallel_size=parallel.ep,
        expert_tensor_parallel_size=parallel.etp,
        distributed_timeout_minutes=max(1, round(parallel.distributed_timeout_minutes)),
    )
    set_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def process_group_kwargs(parallel: ParallelConfig, on_gpu: bool) -> dict:
    """`init_process_group`'s arguments. On GPUs the rank's own device (torchrun's LOCAL_RANK)
    is named: without it NCCL guesses the device from the global rank ("Guessing device ID"),
    which hangs when nodes hold different GPU counts or CUDA_VISIBLE_DEVICES reorders them."""
    kwargs = {
        "backend": "nccl" if on_gpu else "gloo",
        "timeout": datetime.timedelta(minutes=parallel.distributed_timeout_minutes),
    }
    if on_gpu:
        kwargs["device_id"] = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return kwargs


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch identically on every rank."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def is_rank0() -> bool:
    """Whether this process is global rank 0 (or the only process)."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def destroy() -> None:
    """Tear down megatron-core's groups (torch.distributed itself stays up)."""
    from megatron.core import parallel_state
    from megatron.core.transformer.moe.moe_logging import destroy_moe_metrics_tracker

    parallel_state.destroy_model_parallel()
    # Its per-layer metrics are sized by the first model's depth: a deeper model built later in
    # the same process (benchmarks, the GPU script) would index past them.
    destroy_moe_metrics_tracker()
