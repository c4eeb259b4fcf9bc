#!/usr/bin/env python3
"""Training throughput of a reduced-depth Qwen3-30B-A3B proxy: tokens/s, TFLOP/s per GPU, MFU.

The proxy keeps the full width (hidden 2048, 32 heads, 4 query groups, all 128 experts, top-8,
expert FFN 768, vocab 151,936) and fewer layers, so that it fits one GPU. Each sequence length
runs a few warm-up and timed steps of the real training step (megatron-core, bf16, TE spec when
TransformerEngine and a GPU are present), then prints one row per length (peak GiB: the most
allocated; static GiB: allocated between steps, i.e. weights, gradients and optimizer states;
both beyond what was allocated before this length's model was built):

    python benchmarks/bench_train.py --layers 4 --seq-lengths 4096 32768 65536 --recompute full
    python benchmarks/bench_train.py --tiny --seq-lengths 64 128         # CPU: the same harness

MFU = model TFLOP/s (megatron_agentic/flops.py: active experts only) / the GPU's dense bf16 peak.
Run it as one process per GPU under torchrun for several GPUs (CP with --cp).
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import torch


def bench(seq_length: int, args) -> dict:
    from megatron.core.optimizer import OptimizerConfig

    from megatron_agentic import parallel
    from megatron_agentic.flops import training_flops_per_token
    from megatron_agentic.model import get_preset, transformer_config
    from megatron_agentic.train_step import setup_model_and_optimizer, train_step

    preset = (
        "tiny" if args.tiny else ("qwen3_30b_a3b_128k" if seq_length > 40960 else "qwen3_30b_a3b")
    )
    model_cfg = get_preset(preset, **({} if args.tiny else {"num_layers": args.layers}))
    par = parallel.ParallelConfig(cp=args.cp, use_distributed_optimizer=True)
    parallel.initialize(par)
    gpu = torch.cuda.is_available()
    before = torch.cuda.memory_allocated() if gpu else 0  # what an earlier length left behind
    config = transformer_config(
        model_cfg,
        par,
        bf16=gpu,
        recompute_granularity="full" if args.recompute == "full" else None,
        recompute_method="uniform" if args.recompute == "full" else None,
        recompute_num_layers=1 if args.recompute == "full" else None,
    )
    optimizer_cfg = OptimizerConfig(
        optimizer="adam",
        lr=1e-5,
        bf16=gpu,
        params_dtype=config.params_dtype,
        use_distributed_optimizer=True,
    )
    model, optimizer = setup_model_and_optimizer(model_cfg, config, optimizer_cfg, seq_length, True)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model_cfg.vocab_size, (1, seq_length + 1), generator=generator)
    device = torch.cuda.current_device() if gpu else "cpu"
    batch = {
        "tokens": tokens[:, :-1].to(device),
        "labels": tokens[:, 1:].to(device),
        "loss_mask": torch.ones(1, seq_length, device=device),
        "position_ids": torch.arange(seq_length, device=device).unsqueeze(0),
    }
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    times = []
    static_gib = float("nan")
    for step in range(args.warmup + args.steps):
        if gpu:
            torch.cuda.synchronize()
            if step == args.warmup:  # weights, gradients, optimizer states: all allocated by now
                static_gib = (torch.cuda.memory_allocated() - before) / 2**30
        start = time.perf_counter()
        train_step(model, optimizer, config, iter([batch]), 1, 1, seq_length)
        if gpu:
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    world = torch.distributed.get_world_size()
    tokens_per_s = seq_length / seconds  # one sequence per step over the CP group
    tflops = training_flops_per_token(model_cfg, seq_length) * tokens_per_s / world / 1e12
    peak_gib = (torch.cuda.max_memory_allocated() - before) / 2**30 if gpu else float("nan")
    parallel.destroy()
    del model, optimizer, batch
    gc.collect()
    return {
        "seq": seq_length,
        "layers": model_cfg.num_layers,
        "s/step": seconds,
        "tokens/s": tokens_per_s,
        "TFLOP/s/GPU": tflops,
        "MFU": tflops / args.peak_tflops,
        "peak GiB": peak_gib,
        "static GiB": static_gib,
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny preset (CPU harness test)")
    parser.add_argument("--layers", type=int, default=4, help="proxy depth (full model: 48)")
    parser.add_argument("--seq-lengths", type=int, nargs="+", default=[4096, 32768])
    parser.add_argument("--recompute", choices=["none", "full"], default="none")
    parser.add_argument("--cp", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak per GPU")
    args = parser.parse_args(argv)
    for key, value in (
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("LOCAL_RANK", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29521"),
    ):
        os.environ.setdefault(key, value)
    rows = [bench(seq, args) for seq in args.seq_lengths]
    if int(os.environ["RANK"]) == 0:
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        print(f"device: {device}; recompute {args.recompute}; CP {args.cp}")
        print("  ".join(f"{k:>12}" for k in rows[0]))
        for row in rows:
            print(
                "  ".join(
                    f"{v:>12.4g}" if isinstance(v, float) else f"{v:>12}" for v in row.values()
                )
            )
    torch.distributed.destroy_process_group()
    return rows


if __name__ == "__main__":
    main()
