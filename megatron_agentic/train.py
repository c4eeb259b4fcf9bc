"""Continual pre-training of Qwen3-MoE on megatron-core: the training loop, top to bottom.

    torchrun --nproc-per-node 8 -m megatron_agentic.train --config examples/recipes/stage1.yaml \\
        data.blend=blends/stage1.yaml checkpoint.save=/ckpt/stage1 [key.sub=value ...]

1. Read the recipe and overrides, check the parallel layout (all before any process group).
2. Start torch.distributed + megatron-core's parallel state; build the tokenizer, the model (DDP),
   the optimizer and the learning-rate schedule.
3. Resume from `checkpoint.save` if it holds a checkpoint, else load `checkpoint.load` (a stage-1
   result, or an imported HF model) if given.
4. Build the blended GPTDatasets and iterate the global batches from where the run stopped.
5. Train: one optimizer step per global batch; log; stop on a non-finite loss or grad norm
   (keeping the last good checkpoint); evaluate and save every N steps, and save at exit.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from megatron_agentic import checkpointing, document_masking, parallel
from megatron_agentic.config import ConfigError, TrainConfig, dump_yaml, load_config
from megatron_agentic.flops import training_flops_per_token


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm stopped being finite."""


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        parallel.validate_layout(config.model, config.parallel, world_size, config.data.seq_length)
        _check_config(config, world_size)
    except (ConfigError, parallel.LayoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _default_torchrun_env()
    try:
        train(config)
    except TrainingDiverged as error:
        _print0(f"error: {error}")
        return 3
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


def train(config: TrainConfig) -> list[float]:
    """Run the training described by `config`; returns this run's per-step lm losses."""
    from megatron.core import parallel_state
    from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue
    from megatron.core.optimizer import OptimizerConfig
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    from megatron_agentic.data.blend import build_gpt_datasets, load_blend
    from megatron_agentic.model import transformer_config
    from megatron_agentic.tokenizer import build_tokenizer
    from megatron_agentic.train_step import setup_model_and_optimizer, train_step

    parallel.initialize(config.parallel, seed=config.training.seed)
    _print0("resolved config:\n" + dump_yaml(config))
    data, sched, ckpt, opt = config.data, config.schedule, config.checkpoint, config.optimizer

    # Model, optimizer, schedule.
    tc = transformer_config(
        config.model,
        config.parallel,
        bf16=opt.bf16,
        recompute_granularity=config.training.recompute_granularity,
        recompute_method=config.training.recompute_method,
        recompute_num_layers=config.training.recompute_num_layers,
        recompute_modules=config.training.recompute_modules,
    )
    optimizer_config = OptimizerConfig(
        optimizer="adam",
        lr=opt.lr,
        min_lr=opt.min_lr,
        weight_decay=opt.weight_decay,
        adam_beta1=opt.adam_beta1,
        adam_beta2=opt.adam_beta2,
        adam_eps=opt.adam_eps,
        clip_grad=opt.clip_grad,
        bf16=opt.bf16,
        params_dtype=tc.params_dtype,
        use_distributed_optimizer=config.parallel.use_distributed_optimizer,
    )
    model, optimizer = setup_model_and_optimizer(
        config.model,
        tc,
        optimizer_config,
        data.seq_length,
        config.parallel.use_distributed_optimizer,
    )
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=opt.lr,
        min_lr=opt.min_lr,
        lr_warmup_steps=sched.warmup_iters * data.global_batch_size,
        lr_decay_steps=sched.train_iters * data.global_batch_size,
        lr_decay_style=sched.decay_style,
        start_wd=opt.weight_decay,
        end_wd=opt.weight_decay,
        wd_incr_steps=sched.train_iters * data.global_batch_size,
        wd_incr_style="constant",
        wsd_decay_steps=(sched.wsd_decay_iters or 0) * data.global_batch_size,
        lr_wsd_decay_style=sched.wsd_decay_style,
    )

    # Where to start: resume this run, or load the previous stage / the imported model.
    iteration, consumed = 0, 0
    if ckpt.save and checkpointing.read_latest(ckpt.save) is not None:
        iteration, consumed = checkpointing.load_checkpoint(ckpt.save, model, optimizer, scheduler)
        _print0(f"resumed {ckpt.save} at iteration {iteration} ({consumed} samples consumed)")
    elif ckpt.load:
        iteration, consumed = checkpointing.load_checkpoint(
            ckpt.load, model, optimizer, scheduler, load_optimizer=ckpt.load_optimizer
        )
        _print0(f"loaded {ckpt.load} (starting at iteration {iteration})")

    # Data: the blend's train/valid GPTDatasets, sampled deterministically from the seed.
    tokenizer = build_tokenizer(data.tokenizer_type, data.tokenizer_model)
    if tokenizer.vocab_size > config.model.vocab_size:
        raise ConfigError(
            f"data.tokenizer_model has {tokenizer.vocab_size} tokens, more than "
            f"model.vocab_size={config.model.vocab_size}"
        )
    cache_dir = data.cache_dir or str(Path(ckpt.save or ".") / "data_cache")
    evals = config.training.eval_iters if config.training.eval_interval else 0
    train_ds, valid_ds, _ = build_gpt_datasets(
        load_blend(data.blend),
        tokenizer,
        data.seq_length,
        config.training.seed,
        (sched.train_iters * data.global_batch_size, evals * data.global_batch_size, 0),
        cache_dir,
        document_masking.dataset_options(data, torch.cuda.is_available()),
    )
    packed = document_masking.uses_packed_sequences(data, torch.cuda.is_available())

    dp_rank = parallel_state.get_data_parallel_rank()
    dp_size = parallel_state.get_data_parallel_world_size()
    num_micro = data.global_batch_size // (data.micro_batch_size * dp_size)
    writer = _tensorboard(config)
    stop = _StopSignal()
    losses, grad_norms = [], []
    flops_per_token = training_flops_per_token(config.model, data.seq_length)
    saved_at = iteration
    async_saves = AsyncCallsQueue() if ckpt.async_save else None

    def save():
        nonlocal saved_at
        if ckpt.save and saved_at != iteration:
            finish_async_saves(blocking=True)  # at most one save in flight
            checkpointing.save_checkpoint(
                ckpt.save,
                iteration,
                model,
                optimizer,
                scheduler,
                consumed,
                config,
                ckpt.optimizer_format,
                async_queue=async_saves,
            )
            saved_at = iteration
            _print0(
                f"{'saving' if async_saves else 'saved'} checkpoint at iteration {iteration} "
                f"to {ckpt.save}" + (" (in the background)" if async_saves else "")
            )

    def finish_async_saves(blocking: bool):
        """Publish background saves that every rank has finished writing (a collective)."""
        if async_saves is not None and async_saves.maybe_finalize_async_calls(blocking=blocking):
            _print0(f"saved checkpoint at iteration {saved_at} to {ckpt.save}")

    # The loop.
    while iteration < sched.train_iters:
        if config.training.spike_factor > 0 and grad_norms:
            optimizer.config.grad_norm_skip_threshold = config.training.spike_factor * float(
                np.mean(grad_norms[-20:])
            )
        start = time.perf_counter()
        batches = _micro_batches(
            train_ds, consumed, num_micro, data.micro_batch_size, dp_rank, dp_size, packed
        )
        result = train_step(
            model,
            optimizer,
            tc,
            _per_chunk(batches, len(model)),
            num_micro,
            data.micro_batch_size,
            data.seq_length,
        )
        elapsed = time.perf_counter() - start
        iteration += 1
        consumed += data.global_batch_size
        finish_async_saves(blocking=False)
        if not (math.isfinite(result.lm_loss) and math.isfinite(result.grad_norm)):
            finish_async_saves(blocking=True)
            raise TrainingDiverged(
                f"iteration {iteration}: lm loss {result.lm_loss}, grad norm {result.grad_norm}; "
                f"stopped without saving (last good checkpoint: iteration {saved_at})"
            )
        if result.update_successful:
            scheduler.step(increment=data.global_batch_size)
            grad_norms.append(result.grad_norm)
        else:
            _print0(
                f"iteration {iteration}: grad norm {result.grad_norm:.3f} is a spike "
                f"(> {optimizer.config.grad_norm_skip_threshold:.3f}); update skipped"
            )
        losses.append(result.lm_loss)
        aux = _moe_aux_losses(iteration, num_micro, config, writer)
        if iteration % config.logging.log_interval == 0:
            _log(iteration, result, aux, optimizer, elapsed, data, flops_per_token, config, writer)
        if config.training.eval_interval and iteration % config.training.eval_interval == 0:
            _evaluate(
                model,
                tc,
                valid_ds,
                iteration,
                num_micro,
                data,
                dp_rank,
                dp_size,
                writer,
                config.training.eval_iters,
            )
        if iteration % ckpt.save_interval == 0:
            save()
        signalled = stop.on_any_rank()
        if signalled or iteration == config.training.exit_interval:
            _print0(f"stopping at iteration {iteration}" + (" (signal)" if signalled else ""))
            break
    save()
    finish_async_saves(blocking=True)
    if writer is not None:
        writer.close()
    return losses


# --- data -------------------------------------------------------------------------------------


def _micro_batches(
    dataset,
    consumed: int,
    num_micro: int,
    micro_batch_size: int,
    dp_rank: int,
    dp_size: int,
    packed: bool = False,
):
    """This rank's micro-batches of the global batch starting at sample `consumed` (Megatron-LM's
    pretraining sampler order: micro-batch m of rank r holds samples m*mbs*dp + r*mbs + [0, mbs)).
    `packed`: document masking through TE's THD path (see megatron_agentic.document_masking)."""
    for micro in range(num_micro):
        first = consumed + (micro * dp_size + dp_rank) * micro_batch_size
        samples = [dataset[first + i] for i in range(micro_batch_size)]
        batch = document_masking.collate(samples, packed)
        yield {key: value.cuda(non_blocking=True) for key, value in batch.items()}


def _per_chunk(batches, num_chunks: int):
    """megatron-core's interleaved schedule wants one iterator per model chunk."""
    if num_chunks == 1:
        return batches
    batches = list(batches)
    return [iter(batches) for _ in range(num_chunks)]


# --- logging and evaluation -------------------------------------------------------------------


def _moe_aux_losses(iteration: int, num_micro: int, config: TrainConfig, writer) -> dict:
    """Router load-balancing losses of this step, averaged over layers (all ranks take part)."""
    from megatron.core.transformer.moe.moe_utils import get_moe_metrics_tracker

    losses: dict = {}
    get_moe_metrics_tracker().report(
        loss_scale=1.0 / num_micro,
        iteration=iteration,
        writer=writer,
        total_loss_dict=losses,
        num_layers=config.model.num_layers,
    )
    return {name: float(value) for name, value in losses.items()}


def _log(iteration, result, aux, optimizer, elapsed, data, flops_per_token, config, writer):
    from megatron.core import parallel_state

    lr = optimizer.param_groups[0]["lr"]
    tokens_per_s = data.global_batch_size * data.seq_length / elapsed
    world = torch.distributed.get_world_size()
    tflops = flops_per_token * tokens_per_s / world / 1e12
    mfu = tflops / config.logging.gpu_peak_tflops if torch.cuda.is_available() else float("nan")
    memory = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else _rss_gib()
    # The tracker reports the unscaled load-balancing loss (1.0 = balanced); the objective adds
    # it times moe_aux_loss_coeff.
    balance = sum(aux.values())
    figures = {
        "loss": result.lm_loss + config.model.moe_aux_loss_coeff * balance,
        "lm loss": result.lm_loss,
        "load balancing loss": balance,
        "grad norm": result.grad_norm,
        "lr": lr,
        "tokens/s": tokens_per_s,
        "TFLOP/s/GPU": tflops,
        "MFU": mfu,
        "mem GiB": memory,
    }
    if torch.distributed.get_rank() == 0:
        text = " | ".join(f"{k} {v:.4g}" for k, v in figures.items())
        print(f"iteration {iteration:6d}/{config.schedule.train_iters} | {text}", flush=True)
    if writer is not None and parallel_state.is_pipeline_last_stage(ignore_virtual=True):
        for key, value in figures.items():
            writer.add_scalar(key.replace(" ", "_").replace("/", "_per_"), value, iteration)
        if config.logging.wandb_project:
            import wandb

            wandb.log(figures, step=iteration)


def _rss_gib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def _evaluate(model, tc, dataset, iteration, num_micro, data, dp_rank, dp_size, writer, eval_iters):
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from megatron_agentic.train_step import forward_step, reduce_lm_loss

    for chunk in model:
        chunk.eval()
    totals = np.zeros(2)
    with torch.no_grad():
        for step in range(eval_iters):  # the same validation batches every time: comparable
            batches = _micro_batches(
                dataset,
                step * data.global_batch_size,
                num_micro,
                data.micro_batch_size,
                dp_rank,
                dp_size,
                document_masking.uses_packed_sequences(data, torch.cuda.is_available()),
            )
            outputs = get_forward_backward_func()(
                forward_step_func=forward_step,
                data_iterator=_per_chunk(batches, len(model)),
                model=model,
                num_microbatches=num_micro,
                seq_length=data.seq_length,
                micro_batch_size=data.micro_batch_size,
                forward_only=True,
            )
            totals += reduce_lm_loss(outputs)
    for chunk in model:
        chunk.train()
    loss = totals[0] / max(totals[1], 1)
    _print0(
        f"validation at iteration {iteration} | lm loss {loss:.4f} | "
        f"ppl {math.exp(min(loss, 50)):.2f}"
    )
    if writer is not None:
        writer.add_scalar("validation_lm_loss", loss, iteration)


def _tensorboard(config: TrainConfig):
    """A SummaryWriter on the last rank (which holds the loss), when a directory is configured."""
    if not config.logging.tensorboard_dir:
        return None
    if torch.distributed.get_rank() != torch.distributed.get_world_size() - 1:
        return None
    from torch.utils.tensorboard import SummaryWriter

    if config.logging.wandb_project:
        import wandb

        wandb.init(
            project=config.logging.wandb_project,
            name=config.logging.wandb_run_name,
            config=dump_yaml(config),
        )
    return SummaryWriter(log_dir=config.logging.tensorboard_dir)


# --- process plumbing -------------------------------------------------------------------------


class _StopSignal:
    """SIGTERM/SIGUSR1 (SLURM preemption) ask the loop to save and exit after the current step."""

    def __init__(self):
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def on_any_rank(self) -> bool:
        """Whether any rank got the signal: every rank must stop after the same step, and the
        signal reaches them at slightly different times."""
        flag = torch.tensor([int(self.requested)], device="cuda")
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())


def _check_config(config: TrainConfig, world_size: int) -> None:
    try:
        document_masking.check(config.data, config.parallel, torch.cuda.is_available())
    except document_masking.DocumentMaskingError as error:
        raise ConfigError(str(error)) from None
    dp = world_size // (config.parallel.tp * config.parallel.pp * config.parallel.cp)
    per_step = config.data.micro_batch_size * dp
    if config.data.global_batch_size % per_step:
        raise ConfigError(
            f"data.global_batch_size={config.data.global_batch_size} is not divisible by "
            f"micro_batch_size*dp={config.data.micro_batch_size}*{dp}"
        )
    sched = config.schedule
    if not 0 <= sched.warmup_iters < sched.train_iters:
        raise ConfigError(
            f"schedule.warmup_iters={sched.warmup_iters} must be below "
            f"schedule.train_iters={sched.train_iters}"
        )
    if sched.decay_style == "WSD" and not 0 < (sched.wsd_decay_iters or 0) <= (
        sched.train_iters - sched.warmup_iters
    ):
        raise ConfigError(
            f"schedule.wsd_decay_iters={sched.wsd_decay_iters} must be in "
            f"1..train_iters-warmup_iters={sched.train_iters - sched.warmup_iters}"
        )
    if not config.data.blend:
        raise ConfigError("data.blend: a blend YAML is required (see docs/data.md)")
    if not config.data.tokenizer_model:
        raise ConfigError("data.tokenizer_model: the tokenizer is required")


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
    if parallel.is_rank0():
        print(text, flush=True)


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="Agentic CPT of Qwen3-MoE on megatron-core")
    parser.add_argument("--config", help="recipe YAML (examples/recipes/)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
