"""Continual pre-training of Qwen3-MoE on megatron-core: the recipe, and the loop that follows it.

    torchrun --nproc-per-node 8 -m megatron_agentic.train --config examples/recipes/stage1.yaml \\
        data.blend=blends/stage1.yaml checkpoint.save=/ckpt/stage1 [key.sub=value ...]

1. Read the recipe and overrides and check them (before any process group, and before importing
   torch: `--help` and config errors are immediate).
2. Start torch.distributed + megatron-core's parallel state; build the model (DDP), the optimizer
   and the learning-rate schedule (`_build_trainable`).
3. `Checkpointer.resume`: continue `checkpoint.save` if it holds a checkpoint, else load
   `checkpoint.load` (a stage-1 result, or an imported HF model); files verified by checksum.
4. `_build_data`: the blend's train/valid GPTDatasets; `GlobalBatches` (data/batches.py) reads
   this rank's micro-batches of each global batch from where the run stopped.
5. Train: one optimizer step per global batch (`train_step`); stop on a non-finite loss or grad
   norm (keeping the last good checkpoint); `MetricsLogger` reports every step (console,
   TensorBoard, W&B); `Validation` (evaluation.py) every `eval_interval`; `Checkpointer` saves
   every `save_interval` and at exit (also on SIGTERM/SIGUSR1, which all ranks agree on).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm stopped being finite."""


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)  # before any heavy import: --help is immediate
    from megatron_agentic.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
        config.validate()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _default_torchrun_env()
    import torch

    from megatron_agentic import document_masking
    from megatron_agentic.checkpointing import CheckpointCorrupt, CheckpointSaveError
    from megatron_agentic.layer_specs import transformer_engine_available

    try:  # depends on this machine (a dense mask without TE, TE's packed sequences with it)
        document_masking.check(config.data, config.parallel, transformer_engine_available())
    except document_masking.DocumentMaskingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    try:
        train(config)
    except TrainingDiverged as error:
        _print0(f"error: {error}")
        return 3
    except (CheckpointCorrupt, CheckpointSaveError) as error:
        _print0(f"error: {error}")
        return 4
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


def train(config) -> list[float]:
    """Run the training described by `config` (a TrainConfig); returns this run's lm losses."""
    from megatron_agentic import parallel, preemption
    from megatron_agentic.checkpointer import Checkpointer
    from megatron_agentic.config import dump_yaml
    from megatron_agentic.flops import training_flops_per_token
    from megatron_agentic.metrics import MetricsLogger, MoEStats, StepReport
    from megatron_agentic.train_step import train_step

    parallel.initialize(config.parallel, seed=config.training.seed)
    data, training = config.data, config.training
    metrics = MetricsLogger(config, training_flops_per_token(config.model, data.seq_length))
    metrics.message("resolved config:\n" + dump_yaml(config))
    trainable, tc = _build_trainable(config)
    checkpointer = Checkpointer(config, trainable, metrics.message)
    progress = checkpointer.resume()
    batches, validation = _build_data(config, len(trainable.model))
    moe = MoEStats(trainable.model, config.model, tc.sequence_parallel, config.parallel.tp)
    spikes = _SpikeGuard(training.spike_factor, trainable.optimizer)
    stop = preemption.StopSignal()
    losses = []
    while progress.iteration < config.schedule.train_iters:
        spikes.arm()
        start = time.perf_counter()
        result = train_step(
            trainable.model,
            trainable.optimizer,
            tc,
            batches.data_iterator(progress.consumed_samples),
            batches.num_micro,
            data.micro_batch_size,
            data.seq_length,
        )
        seconds = time.perf_counter() - start
        progress.iteration += 1
        progress.consumed_samples += data.global_batch_size
        checkpointer.poll()
        _stop_if_diverged(result, progress.iteration, checkpointer)
        spikes.record(result, progress.iteration, trainable.scheduler, metrics, data)
        losses.append(result.lm_loss)
        logged = progress.iteration % config.logging.log_interval == 0
        report = StepReport(
            iteration=progress.iteration,
            lm_loss=result.lm_loss,
            grad_norm=result.grad_norm,
            lr=trainable.optimizer.param_groups[0]["lr"],
            seconds=seconds,
            consumed_samples=progress.consumed_samples,
            moe=moe.collect(progress.iteration, batches.num_micro, with_load=logged),
        )
        metrics.step(report)
        if validation is not None and progress.iteration % training.eval_interval == 0:
            metrics.validation(progress.iteration, validation.lm_loss(trainable.model))
        checkpointer.maybe_save(progress)
        signalled = stop.on_any_rank()
        if signalled or progress.iteration == training.exit_interval:
            metrics.message(
                f"stopping at iteration {progress.iteration}" + (" (signal)" if signalled else "")
            )
            break
    checkpointer.save(progress)
    checkpointer.finish()
    preemption.record_exit(progress.iteration, config.checkpoint.save)
    metrics.close()
    return losses


# --- setup --------------------------------------------------------------------------------------


def _build_trainable(config):
    """This rank's model chunks (DDP), the optimizer and the schedule, and the TransformerConfig."""
    from megatron_agentic.checkpointing import Trainable
    from megatron_agentic.train_step import setup_model_and_optimizer

    tc = config.transformer_config()
    model, optimizer = setup_model_and_optimizer(
        config.model,
        tc,
        config.optimizer_config(tc.params_dtype),
        config.data.seq_length,
        config.parallel.use_distributed_optimizer,
    )
    return Trainable(model, optimizer, config.build_scheduler(optimizer)), tc


def _build_data(config, num_chunks: int):
    """(training GlobalBatches, Validation or None): the blend's GPTDatasets, sampled
    deterministically from the seed, split over this rank's data-parallel position."""
    from pathlib import Path

    from megatron.core import parallel_state

    from megatron_agentic import document_masking
    from megatron_agentic.config import ConfigError
    from megatron_agentic.data.batches import GlobalBatches
    from megatron_agentic.data.blend import build_gpt_datasets, load_blend
    from megatron_agentic.evaluation import Validation
    from megatron_agentic.layer_specs import transformer_engine_available
    from megatron_agentic.tokenizer import build_tokenizer

    data, training = config.data, config.training
    te_attention = transformer_engine_available()
    tokenizer = build_tokenizer(data.tokenizer_type, data.tokenizer_model)
    if tokenizer.vocab_size > config.model.vocab_size:
        raise ConfigError(
            f"data.tokenizer_model has {tokenizer.vocab_size} tokens, more than "
            f"model.vocab_size={config.model.vocab_size}"
        )
    evals = training.eval_iters if training.eval_interval else 0
    train_ds, valid_ds, _ = build_gpt_datasets(
        load_blend(data.blend),
        tokenizer,
        data.seq_length,
        training.seed,
        (config.schedule.train_iters * data.global_batch_size, evals * data.global_batch_size, 0),
        data.cache_dir or str(Path(config.checkpoint.save or ".") / "data_cache"),
        document_masking.dataset_options(data, te_attention),
    )
    dp_size = parallel_state.get_data_parallel_world_size()
    split = {
        "packed": document_masking.uses_packed_sequences(data, te_attention),
        "micro_batch_size": data.micro_batch_size,
        "num_micro": data.global_batch_size // (data.micro_batch_size * dp_size),
        "dp_rank": parallel_state.get_data_parallel_rank(),
        "dp_size": dp_size,
        "num_chunks": num_chunks,
    }
    batches = GlobalBatches(train_ds, **split)
    if not evals:
        return batches, None
    return batches, Validation(GlobalBatches(valid_ds, **split), data.seq_length, evals)


# --- step outcomes ------------------------------------------------------------------------------


def _stop_if_diverged(result, iteration: int, checkpointer) -> None:
    """A non-finite loss or grad norm ends the run, without saving the broken state."""
    import math

    if math.isfinite(result.lm_loss) and math.isfinite(result.grad_norm):
        return
    checkpointer.finish()
    raise TrainingDiverged(
        f"iteration {iteration}: lm loss {result.lm_loss}, grad norm {result.grad_norm}; "
        f"stopped without saving (last good checkpoint: iteration {checkpointer.saved_at})"
    )


class _SpikeGuard:
    """`training.spike_factor`: megatron-core skips an update whose grad norm exceeds the factor
    times the mean of the last 20 applied updates' norms; skipped steps are logged."""

    def __init__(self, factor: float, optimizer):
        self.factor, self.optimizer, self.norms = factor, optimizer, []

    def arm(self) -> None:
        if self.factor > 0 and self.norms:
            recent = self.norms[-20:]
            self.optimizer.config.grad_norm_skip_threshold = self.factor * sum(recent) / len(recent)

    def record(self, result, iteration: int, scheduler, metrics, data) -> None:
        if result.update_successful:
            scheduler.step(increment=data.global_batch_size)
            self.norms.append(result.grad_norm)
            return
        metrics.message(
            f"iteration {iteration}: grad norm {result.grad_norm:.3f} is a spike "
            f"(> {self.optimizer.config.grad_norm_skip_threshold:.3f}); update skipped"
        )


# --- process plumbing ---------------------------------------------------------------------------


def _default_torchrun_env() -> None:
    """Let `python -m megatron_agentic.train` run as a single process without torchrun."""
    for key, value in (
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("LOCAL_RANK", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
    ):
        os.environ.setdefault(key, value)


def _print0(text: str) -> None:
    from megatron_agentic import parallel

    if parallel.is_rank0():
        print(text, flush=True)


def _parse_args(argv):
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The command line (argparse only: nothing heavy is imported to show --help)."""
    parser = argparse.ArgumentParser(
        prog="python -m megatron_agentic.train",
        description="Agentic continual pre-training of Qwen3-MoE on megatron-core. Run one "
        "process per GPU with torchrun; see docs/training.md.",
        epilog="exit codes: 0 done (or stopped by a signal after saving), 2 bad config, "
        "3 diverged (non-finite loss or grad norm), 4 checkpoint damaged or save failed "
        "(e.g. disk full)",
    )
    parser.add_argument(
        "--config",
        metavar="RECIPE.yaml",
        help="recipe YAML with the sections model, parallel, data, optimizer, schedule, "
        "checkpoint, logging, training (examples/recipes/); defaults for whatever it omits",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="overrides of recipe values, YAML-typed, e.g. optimizer.lr=1e-4 parallel.tp=2 "
        "checkpoint.save=/ckpt/run",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
