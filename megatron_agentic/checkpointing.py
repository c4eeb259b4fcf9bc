"""Checkpoints in Megatron-LM's layout on megatron-core dist_checkpointing (torch_dist).

    CKPT/latest_checkpointed_iteration.txt     the iteration number, or "release"
    CKPT/iter_0000100/                         dist checkpoint: model, optimizer, scheduler, RNG,
                                               iteration, consumed samples
    CKPT/iter_0000100/model_config.yaml        the architecture (Qwen3MoEConfig)
    CKPT/iter_0000100/run_config.yaml          the resolved training config
    CKPT/iter_0000100/checksums.json           size and sha256 of every other file in it
    CKPT/release/                              an imported model (weights only)

A save goes to a hidden `.iter_*.partial` directory, renamed when every rank has finished, and the
"latest" file is replaced (atomically) only after that: a crash mid-save never leaves anything
that a resume would take for a checkpoint. Model tensors are saved under global keys, so any
TP/PP/EP layout loads them; the distributed optimizer's state is saved `fully_reshardable` by
default for the same reason.

Integrity: publishing a save records the size and sha256 of each of its files and a load
verifies them first, so a corrupt, truncated or empty shard is an error naming the file
(`CheckpointCorrupt`) instead of a silently different run; retention deletes older checkpoints
only after the newer one is published (both file-level rules live in `checkpoint_files`). Every
step of a save agrees across ranks on failure: a save that fails because the disk is full says
"no space left on <path>" (`CheckpointSaveError`) on every rank and removes its partial
directory; the previous checkpoint stays the latest.

Loading works around two megatron-core 0.19 bugs with torch's Adam (no apex/TE fused Adam):
DistributedOptimizer.load_state_dict gives every parameter's Adam state one shared `step` tensor,
which Adam then increments once per parameter per step - the run resumes without error and
silently diverges (after loading, every state entry gets its own copy); and the
`fully_reshardable` loader fails with KeyError 'step' (see `_prepare_optimizer_for_load`).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import random
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import yaml
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject

from megatron_agentic import megatron_lm_compat, parallel
from megatron_agentic.checkpoint_files import (  # noqa: F401 - the layout is re-exported
    LATEST,
    RELEASE,
    CheckpointCorrupt,
    all_gather,
    apply_retention,
    checkpoint_problems,
    file_checksums,
    iteration_dir,
    newest_intact_iteration,
    published_iterations,
    read_latest,
    verify_checkpoint,
    write_checksums,
    write_latest,
)
from megatron_agentic.checkpoint_keys import rename_legacy_keys

MODEL_CONFIG = "model_config.yaml"
RUN_CONFIG = "run_config.yaml"


class CheckpointSaveError(RuntimeError):
    """A save failed (e.g. the disk is full); the previous checkpoint stays the latest."""


@dataclasses.dataclass
class Trainable:
    """What a checkpoint holds besides the position: this rank's model chunks (DDP-wrapped or
    bare), the megatron-core optimizer and the learning-rate scheduler (None: weights only)."""

    model: list
    optimizer: object = None
    scheduler: object = None


@dataclasses.dataclass
class Progress:
    """Where training stands: optimizer steps taken and samples consumed."""

    iteration: int = 0
    consumed_samples: int = 0


@dataclasses.dataclass(frozen=True)
class SaveOptions:
    """How to save: the optimizer-state format, and which older checkpoints to keep."""

    optimizer_format: str = "fully_reshardable"
    keep_last_n: int | None = None  # None: keep every checkpoint
    keep_every_m: int | None = None  # also keep iterations divisible by M


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
    trainable: Trainable,
    progress: Progress,
    run_config,
    options: SaveOptions = SaveOptions(),
    async_queue=None,
) -> Path:
    """Save everything needed to resume exactly; returns the directory the checkpoint lands in.

    With `async_queue` (megatron-core's AsyncCallsQueue) the tensors are written by a process
    forked from this one - a snapshot of this step's state, while training goes on - and the
    directory is renamed and the "latest" marker moved only when the queue finalizes the save
    (`async_queue.maybe_finalize_async_calls`, on every rank). Raises `CheckpointSaveError` on
    every rank when any rank fails (e.g. "no space left on <path>")."""
    root = Path(root)
    final = iteration_dir(root, progress.iteration)
    partial = root / f".{final.name}.partial"
    explained = functools.partial(_explain_failures, root, partial, progress.iteration)
    explained(_on_all_ranks, _make_partial_dir, root, partial, rank0_only=True)
    state, metadata = _state_to_save(trainable, progress, run_config, options)
    publish = functools.partial(_publish, partial, final, progress.iteration, run_config, options)
    if async_queue is None:
        with without_async_notice():
            save = functools.partial(dist_checkpointing.save, content_metadata=metadata)
            explained(_on_all_ranks, save, state, str(partial))
        explained(publish)
    else:
        request = dist_checkpointing.save(
            state,
            str(partial),
            content_metadata=metadata,
            async_sharded_save=True,
            async_strategy="mcore",
        )
        request.add_finalize_fn(functools.partial(explained, publish))
        async_queue.schedule_async_request(request)
    return final


def _make_partial_dir(root: Path, partial: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(partial, ignore_errors=True)  # left by a crash
    partial.mkdir()


def _state_to_save(trainable: Trainable, progress: Progress, run_config, options: SaveOptions):
    state = model_sharded_state_dict(trainable.model)
    metadata = {
        "distrib_optim_sharding_type": options.optimizer_format,
        # Tensor keys independent of how the optimizer is split into dense/expert parts.
        "chained_optim_avoid_prefix": True,
        "num_optimizers": len(_inner_optimizers(trainable.optimizer)),
    }
    state["optimizer"] = trainable.optimizer.sharded_state_dict(
        _flatten_model(state), metadata=metadata
    )
    state["opt_param_scheduler"] = trainable.scheduler.state_dict()
    state["iteration"] = progress.iteration
    state["consumed_samples"] = progress.consumed_samples
    state["rng_state"] = _rng_state()
    state.update(
        megatron_lm_compat.common_state(
            run_config.model, progress.iteration, progress.consumed_samples
        )
    )
    return state, metadata


def _publish(partial: Path, final: Path, iteration: int, run_config, options: SaveOptions) -> None:
    """Once every rank has written its part: configs, checksums, rename into place, move the
    marker, and only then delete what retention no longer keeps."""
    _barrier()
    _on_all_ranks(_write_configs, partial, run_config, rank0_only=True)
    checksums = file_checksums(partial)
    _on_all_ranks(_move_into_place, partial, final, iteration, checksums, rank0_only=True)
    _on_all_ranks(
        apply_retention,
        final.parent,
        iteration,
        options.keep_last_n,
        options.keep_every_m,
        rank0_only=True,
    )


def _write_configs(partial: Path, run_config) -> None:
    (partial / MODEL_CONFIG).write_text(yaml.safe_dump(dataclasses.asdict(run_config.model)))
    (partial / RUN_CONFIG).write_text(yaml.safe_dump(dataclasses.asdict(run_config)))


def _move_into_place(partial: Path, final: Path, iteration: int, checksums: dict) -> None:
    write_checksums(partial, checksums)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    write_latest(final.parent, iteration)


# --- failures during a save ---------------------------------------------------------------------


class _RankFailures(Exception):
    """Some ranks failed a step of the save: {rank: "Type: message"}, and this rank's error."""

    def __init__(self, failures: dict[int, str], error: BaseException | None):
        super().__init__(failures)
        self.failures, self.error = failures, error


def _on_all_ranks(fn, *args, rank0_only: bool = False):
    """Run `fn` (on every rank, or on rank 0 only) and make every rank agree on the outcome: if
    any rank failed, every rank raises `_RankFailures` (no rank waits at a later barrier for a
    rank that is gone)."""
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException

    error = None
    if not rank0_only or parallel.is_rank0():
        try:
            fn(*args)
        except (Exception, CheckpointException) as caught:  # noqa: BLE001 - every rank must learn of any rank's failure
            error = caught
    texts = all_gather(None if error is None else f"{type(error).__name__}: {error}")
    failures = {rank: text for rank, text in enumerate(texts) if text}
    if failures:
        raise _RankFailures(failures, error)


def _explain_failures(root: Path, partial: Path, iteration: int, step, *args, **kwargs) -> None:
    """Run one step of a save; turn a failure into `CheckpointSaveError` (on every rank), say
    "no space left on <root>" when the disk is full, and remove the partial directory."""
    try:
        step(*args, **kwargs)
    except _RankFailures as failure:
        raise _save_error(root, partial, iteration, failure.failures, failure.error) from (
            failure.error
        )


def async_save_failed(root: str | Path, iteration: int, error: BaseException):
    """The `CheckpointSaveError` for a background save whose writing failed (megatron-core
    raises that on every rank when it finalizes the save); removes its partial directory."""
    root = Path(root)
    partial = root / f".{iteration_dir(root, iteration).name}.partial"
    failures = {
        rank: text for rank, text in enumerate(all_gather(f"{type(error).__name__}: {error}"))
    }
    return _save_error(root, partial, iteration, failures, error)


def _save_error(root: Path, partial: Path, iteration: int, failures: dict, error) -> Exception:
    """A collective: every rank gets the same message."""
    full = any(all_gather(_no_space(root, error)))
    _barrier()
    if parallel.is_rank0():
        shutil.rmtree(partial, ignore_errors=True)
    _barrier()
    latest = read_latest(root) if root.is_dir() else None
    kept = f"iteration {latest} stays the latest checkpoint" if latest else "no checkpoint kept"
    if full:
        return CheckpointSaveError(
            f"no space left on {root} while saving iteration {iteration}; {kept}"
        )
    first = min(failures)
    return CheckpointSaveError(
        f"saving iteration {iteration} to {root} failed on rank(s) {sorted(failures)}; {kept}; "
        f"rank {first}: {failures[first]}"
    )


def _no_space(root: Path, error: BaseException | None) -> bool:
    """Whether `error` (or anything that caused it) is ENOSPC/EDQUOT, or `root`'s filesystem has
    no room left: torch's zip writer reports a full disk as "unexpected pos 704 vs 598"."""
    full = {errno.ENOSPC, errno.EDQUOT}
    while error is not None:
        if isinstance(error, OSError) and error.errno in full:
            return True
        error = error.__cause__ or error.__context__
    probe = root / f".space_probe_{os.getpid()}"
    try:
        with open(probe, "wb") as file:
            file.write(bytes(2**20))
            file.flush()
            os.fsync(file.fileno())
    except OSError as caught:
        return caught.errno in full
    finally:
        probe.unlink(missing_ok=True)
    return False


@contextmanager
def without_async_notice():
    """megatron-core routes synchronous saves through its async writer, which then logs "MCore's
    async save is deprecated" although nothing is asynchronous: drop that one record."""
    torch_strategy = logging.getLogger("megatron.core.dist_checkpointing.strategies.torch")

    def not_the_notice(record: logging.LogRecord) -> bool:
        return "async save is deprecated" not in record.getMessage()

    torch_strategy.addFilter(not_the_notice)
    try:
        yield
    finally:
        torch_strategy.removeFilter(not_the_notice)


# --- load ---------------------------------------------------------------------------------------


def load_checkpoint(
    root: str | Path,
    model,
    optimizer,
    scheduler,
    load_optimizer: bool = True,
    iteration: int | str | None = None,
    verify: bool = True,
) -> tuple[int, int]:
    """Load the latest checkpoint under `root` (or `iteration`); returns (iteration, consumed
    samples). Its files are verified against their checksums first (`CheckpointCorrupt`) unless
    `verify` is False (the caller has just verified them).

    A `release` checkpoint, or `load_optimizer=False`, loads the weights only and starts at
    iteration 0 with the fresh optimizer and schedule."""
    latest = read_latest(root) if iteration is None else iteration
    if latest is None:
        raise FileNotFoundError(f"{root}: no {LATEST} (nothing to load)")
    directory = iteration_dir(root, latest)
    if not directory.is_dir():
        raise FileNotFoundError(f"{root}/{LATEST} names {latest}, but {directory} does not exist")
    if verify:
        verify_checkpoint(directory)
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
