#!/usr/bin/env python3
"""Which parallel layouts fit Qwen3-MoE on your GPUs, ranked by estimated step time.

    python tools/plan_parallelism.py --preset qwen3_30b_a3b_128k --seq-length 131072 \\
        --micro-batch 1 --global-batch 16 --gpu-memory-gb 80 --nodes 8
    python tools/plan_parallelism.py ... --layout tp=2,cp=4,pp=4,ep=8   # explain one layout
    python tools/plan_parallelism.py ... --layout tp=1,cp=8,pp=2,vpp=2,ep=8,recompute=selective,modules=moe
    (plan() keeps layouts within 90% of --gpu-memory-gb: --safety-margin, default 0.10)

The assumptions behind the estimate are in megatron_agentic/planner.py and docs/parallelism.md.
"""

import argparse

from megatron_agentic.model import PRESETS, get_preset
from megatron_agentic.planner import DEFAULT_SAFETY_MARGIN, Layout, estimate, plan


def explain(e) -> str:
    return (
        f"{e.layout} DP={e.data_parallel}: ~{e.total_gb:.1f} GB per GPU = weights+grads "
        f"{e.weights_and_grads_gb:.1f} + optimizer {e.optimizer_gb:.1f} + activations "
        f"{e.activations_gb:.1f} + MoE buffers {e.moe_buffers_gb:.1f} + 6 fixed; "
        f"{(e.dense_params + e.expert_params) / 1e9:.2f}B parameters per GPU "
        f"({e.expert_params / 1e9:.2f}B expert); relative step time {e.relative_step_time:.2f}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="qwen3_30b_a3b", choices=sorted(PRESETS))
    parser.add_argument("--seq-length", type=int, default=32768)
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--gpu-memory-gb", type=float, default=80.0)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--safety-margin", type=float, default=DEFAULT_SAFETY_MARGIN)
    parser.add_argument(
        "--layout",
        help="explain one layout, e.g. tp=2,pp=4,ep=8,cp=1,recompute=full or "
        "tp=1,cp=8,pp=2,vpp=2,ep=8,recompute=selective,modules=layernorm+moe_act",
    )
    args = parser.parse_args(argv)
    model = get_preset(args.preset)
    world = args.nodes * args.gpus_per_node
    if args.layout:
        fields = dict(item.split("=") for item in args.layout.split(","))
        modules = tuple(m for m in fields.pop("modules", "").split("+") if m)
        layout = Layout(
            **{k: (v if k == "recompute" else int(v)) for k, v in fields.items()},
            recompute_modules=modules,
        )
        result = estimate(
            model,
            layout,
            args.seq_length,
            args.micro_batch,
            args.global_batch,
            world,
            args.gpus_per_node,
        )
        verdict = "fits" if result.total_gb <= args.gpu_memory_gb else "does NOT fit"
        print(f"{explain(result)} -> {verdict} in {args.gpu_memory_gb:g} GB")
        return 0
    results = plan(
        model,
        args.seq_length,
        args.micro_batch,
        args.global_batch,
        args.gpu_memory_gb,
        args.nodes,
        args.gpus_per_node,
        args.safety_margin,
    )
    print(
        f"{args.preset}, seq {args.seq_length}, batch {args.global_batch}x{args.micro_batch}, "
        f"{args.nodes} nodes x {args.gpus_per_node} GPUs of {args.gpu_memory_gb:g} GB: "
        f"{len(results)} layouts fit in {1 - args.safety_margin:.0%} of it"
    )
    for result in results[: args.top]:
        print("  " + explain(result))
    return 0 if results else 1


if __name__ == "__main__":
    raise SystemExit(main())
