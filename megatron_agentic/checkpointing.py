"""Checkpoints in Megatron-LM's layout on megatron-core dist_checkpointing (torch_dist).

    CKPT/latest_checkpointed_iteration.txt     the iteration number, or "release"
    CKPT/iter_0000100/                         dist checkpoint: model, optimizer, scheduler, RNG,
                                               iteration, consumed samples
    CKPT/iter_0000100/model_config.yaml        the architecture (Qwen3MoEConfig)
    CKPT/iter_0000100/run_config.yaml          the resolved training config
    CKPT/release/                              an imported model (weights only)

A save goes to a hidden `.iter_*.partial` directory, renamed when every rank has finished, and the
"latest" file is replaced (atomically) only after that: a crash mid-save never leaves anything
that a resume would take for a checkpoint. Model tensors are saved under global keys, so any
TP/PP/EP layout loads them; the distributed optimizer's state is saved `fully_reshardable` by
default for the same reason.

Loading works around two megatron-core 0.19 bugs with torch's Adam (no apex/TE fused Adam):
DistributedOptimizer.load_state_dict gives every parameter's Adam state one shared `step` tensor,
which Adam then increments once per parameter per step - the run resumes without error and
silently diverges (after loading, every state entry gets its own copy); and the
`fully_reshardable` loader fails with KeyError 'step' (see `_prepare_optimizer_for_load`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject

from megatron_agentic import megatron_lm_compat, parallel
from megatron_agentic.checkpoint_keys import rename_legacy_keys

LATEST = "latest_checkpointed_iteration.txt"
RELEASE = "release"
MODEL_CONFIG = "model_config.yaml"
RUN_CONFIG = "run_config.yaml"


def iteration_dir(root: str | Path, iteration: int | str) -> Path:
    """`root/iter_0000042`, or `root/release`."""
    name = RELEASE if iteration == RELEASE else f"iter_{int(iteration):07d}"
    return Path(root) / name


def read_latest(root: str | Path) -> int | str | None:
    """The iteration the latest marker names (an int or "release"), or None if there is none."""
    marker = Path(root) / LATEST
    if not marker.is_file():
        return None
    text = marker.read_text().strip()
    if text == RELEASE:
        return RELEASE
    if not text.isdigit():
        raise ValueError(f"{marker}: expected an iteration number or 'release', got {text!r}")
    return int(text)


def write_latest(root: str | Path, iteration: int | str) -> None:
    """Point the marker at a finished checkpoint (temp file + rename: never half-written)."""
    marker = Path(root) / LATEST
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(f"{iteration}\n")
    os.replace(tmp, marker)


def model_sharded_state_dict(model) -> dict:
    """Megatron-LM's keys: `model`, or `model0`, `model1`, ... for virtual pipeline chunks."""
    chunks = [getattr(chunk, "module", chunk) for chunk in model]
    if len(chunks) == 1:
        return {"model": chunks[0].sharded_state_dict()}
    return {f"model{i}": chunk.sharded_state_dict() for i, chunk in enumerate(chunks)}


def _flatten_model(state: dict) -> dict:
    merged = {}
    for key in sorted(k for k in state if k.startswith("model")):
        merged.update(state[key])
    return merged


def _rng_state() -> ShardedObject:
    state = {  # Megatron-LM's names (megatron_lm_compat)
        "random_rng_state": random.getstate(),
        "np_rng_state": np.random.get_state(),
        "torch_rng_state": torch.get_rng_state(),
        "cuda_rng_state": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "rng_tracker_states": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    pp, tp = (
        parallel_state.get_pipeline_model_parallel_world_size(),
        parallel_state.get_tensor_model_parallel_world_size(),
    )
    return ShardedObject(
        "rng_state",
        [state],
        (pp, tp),
        (
            parallel_state.get_pipeline_model_parallel_rank(),
            parallel_state.get_tensor_model_parallel_rank(),
        ),
        replica_id=parallel_state.get_data_parallel_rank(with_context_parallel=True),
    )


def _set_rng_state(sharded: ShardedObject | list) -> None:
    (state,) = sharded.data if isinstance(sharded, ShardedObject) else sharded
    state = megatron_lm_compat.rng_with_current_names(state)  # also read our older names
    random.setstate(state["random_rng_state"])
    np.random.set_state(state["np_rng_state"])
    torch.set_rng_state(state["torch_rng_state"])
    if state["cuda_rng_state"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng_state"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["rng_tracker_states"])


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def save_checkpoint(
    root: str | Path,
    iteration: int,
    model,
    optimizer,
    scheduler,
    consumed_samples: int,
    run_config,
    optimizer_format: str,
    async_queue=None,
) -> Path:
    """Save everything needed to resume exactly; returns the directory the checkpoint lands in.

    With `async_queue` (megatron-core's AsyncCallsQueue) the tensors are written by a process
    forked from this one - a snapshot of this step's state, while training goes on - and the
    directory is renamed and the "latest" marker moved only when the queue finalizes the save
    (`async_queue.maybe_finalize_async_calls`, on every rank)."""
    root = Path(root)
    final = iteration_dir(root, iteration)
    partial = root / f".{final.name}.partial"
    if parallel.is_rank0():
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)  # left by a crash
        partial.mkdir()
    _barrier()
    state = model_sharded_state_dict(model)
    metadata = {
        "distrib_optim_sharding_type": optimizer_format,
        # Tensor keys independent of how the optimizer is split into dense/expert parts.
        "chained_optim_avoid_prefix": True,
        "num_optimizers": len(_inner_optimizers(optimizer)),
    }
    state["optimizer"] = optimizer.sharded_state_dict(_flatten_model(state), metadata=metadata)
    state["opt_param_scheduler"] = scheduler.state_dict()
    state["iteration"] = iteration
    state["consumed_samples"] = consumed_samples
    state["rng_state"] = _rng_state()
    state.update(megatron_lm_compat.common_state(run_config.model, iteration, consumed_samples))
    publish = functools.partial(_publish, partial, final, iteration, run_config)
    if async_queue is None:
        dist_checkpointing.save(state, str(partial), content_metadata=metadata)
        publish()
    else:
        request = dist_checkpointing.save(
            state,
            str(partial),
            content_metadata=metadata,
            async_sharded_save=True,
            async_strategy="mcore",
        )
        request.add_finalize_fn(publish)
        async_queue.schedule_async_request(request)
    return final


def _publish(partial: Path, final: Path, iteration: int, run_config) -> None:
    """Once every rank has written its part: configs, rename into place, move the marker."""
    _barrier()
    if parallel.is_rank0():
        (partial / MODEL_CONFIG).write_text(yaml.safe_dump(dataclasses.asdict(run_config.model)))
        (partial / RUN_CONFIG).write_text(yaml.safe_dump(dataclasses.asdict(run_config)))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        write_latest(final.parent, iteration)
    _barrier()


def load_checkpoint(
    root: str | Path, model, optimizer, scheduler, load_optimizer: bool = True
) -> tuple[int, int]:
    """Load the latest checkpoint under `root`; returns (iteration, consumed samples).

    A `release` checkpoint, or `load_optimizer=False`, loads the weights only and starts at
    iteration 0 with the fresh optimizer and schedule."""
    latest = read_latest(root)
    if latest is None:
        raise FileNotFoundError(f"{root}: no {LATEST} (nothing to load)")
    directory = iteration_dir(root, latest)
    if not directory.is_dir():
        raise FileNotFoundError(f"{root}/{LATEST} names {latest}, but {directory} does not exist")
    state = model_sharded_state_dict(model)
    resume = load_optimizer and latest != RELEASE
    if resume:
        metadata = dist_checkpointing.load_content_metadata(str(directory)) or {}
        _check_optimizer_split(directory, metadata, optimizer)
        _prepare_optimizer_for_load(optimizer)
        state["optimizer"] = optimizer.sharded_state_dict(
            _flatten_model(state), is_loading=True, metadata=metadata
        )
        if _same_layout(directory):
            state["rng_state"] = _rng_state()
    rename_legacy_keys(state, directory)  # checkpoints saved before the TE key change
    loaded = dist_checkpointing.load(state, str(directory))
    chunks = [getattr(chunk, "module", chunk) for chunk in model]
    keys = ["model"] if len(chunks) == 1 else [f"model{i}" for i in range(len(chunks))]
    for chunk, key in zip(chunks, keys):
        chunk.load_state_dict(loaded[key])
    if not resume:
        return 0, 0
    with torch.no_grad():
        optimizer.load_state_dict(loaded["optimizer"])
    _untie_adam_steps(optimizer)
    scheduler.load_state_dict(loaded["opt_param_scheduler"])
    if "rng_state" in loaded:
        _set_rng_state(loaded["rng_state"])
    return int(loaded["iteration"]), int(loaded["consumed_samples"])


def _inner_optimizers(optimizer) -> list:
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def _check_optimizer_split(directory: Path, metadata: dict, optimizer) -> None:
    """megatron-core splits the optimizer into a dense and an expert part when their data-parallel
    groups differ; its loader cannot map state between a split and an unsplit optimizer."""
    saved, current = metadata.get("num_optimizers"), len(_inner_optimizers(optimizer))
    if saved is not None and saved != current:
        raise ValueError(
            f"{directory}: optimizer state was saved as {saved} part(s) (dense/expert), this layout "
            f"has {current}: it splits exactly when the expert data-parallel size "
            "(world / (ep*etp*pp)) differs from the dense one (world / (tp*cp*pp)). Resume with a "
            "layout that keeps that property, or load the weights only "
            "(checkpoint.load_optimizer=false)."
        )


def _prepare_optimizer_for_load(optimizer) -> None:
    """Ready each DistributedOptimizer for megatron-core 0.19's load path.

    Its state must exist before the sharded state dict to load into can be built. And the
    `fully_reshardable` loader fills every tensor of a parameter's state except torch Adam's
    `step` (restored from the param groups instead) and fails with KeyError 'step' on it: mark
    `step` as "not given" so that the loader skips it.
    """
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    for inner in _inner_optimizers(optimizer):
        if isinstance(inner, DistributedOptimizer):
            inner._init_optimizer_states_with_dummy_values()
            set_states = inner._set_main_param_and_optimizer_states

            def set_states_without_step(model_param, tensors, _set=set_states):
                return _set(model_param, {"step": None, **tensors})

            inner._set_main_param_and_optimizer_states = set_states_without_step


def _untie_adam_steps(optimizer) -> None:
    """Give every parameter's Adam state its own `step` tensor (see the module docstring)."""
    for inner in _inner_optimizers(optimizer):
        torch_optimizer = getattr(inner, "optimizer", None)
        if torch_optimizer is None:
            continue
        for state in torch_optimizer.state.values():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].detach().clone()


def _same_layout(directory: Path) -> bool:
    """RNG states are per (PP, TP) rank: restore them only under the layout they were saved in."""
    run_config = directory / RUN_CONFIG
    if not run_config.is_file():
        return False
    saved = (yaml.safe_load(run_config.read_text()) or {}).get("parallel", {})
    return (saved.get("tp"), saved.get("pp")) == (
        parallel_state.get_tensor_model_parallel_world_size(),
        parallel_state.get_pipeline_model_parallel_world_size(),
    )
