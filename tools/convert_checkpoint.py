#!/usr/bin/env python3
"""Convert Qwen3-MoE checkpoints between Hugging Face and megatron-core (dist checkpoint).

    # import the base model for Stage 1 (one local process per rank of the layout)
    python tools/convert_checkpoint.py hf-to-megatron --hf-model /models/Qwen3-30B-A3B-Base \\
        --output /ckpt/qwen3-30b-a3b-base --tp 1 --pp 4 --ep 8
    # export a trained checkpoint for transformers / vLLM
    python tools/convert_checkpoint.py megatron-to-hf --input /ckpt/stage2 --output /models/agentic

The imported checkpoint is a `release` checkpoint: the trainer's `checkpoint.load` starts from it
under any layout (dist checkpoints reshard on load). See docs/conversion.md.
"""

import argparse
import math
import sys
import time

from megatron_agentic.hf_conversion import (
    ConversionError,
    export_hf_checkpoint,
    hf_dtype,
    import_rank,
)
from megatron_agentic.local_ranks import run_on_ranks
from megatron_agentic.parallel import ParallelConfig


def hf_to_megatron(args) -> None:
    layout = ParallelConfig(
        tp=args.tp, pp=args.pp, ep=args.ep, etp=args.etp, use_distributed_optimizer=False
    )
    world_size = math.lcm(args.tp * args.pp, args.ep * args.etp * args.pp)
    dtype = args.dtype or hf_dtype(args.hf_model)
    start = time.perf_counter()
    run_on_ranks(import_rank, world_size, args.hf_model, args.output, layout, dtype)
    print(
        f"imported {args.hf_model} -> {args.output}/release ({dtype}, tp={args.tp} pp={args.pp} "
        f"ep={args.ep} etp={args.etp}, {world_size} ranks) in {time.perf_counter() - start:.1f} s"
    )


def megatron_to_hf(args) -> None:
    start = time.perf_counter()
    out = export_hf_checkpoint(
        args.input,
        args.output,
        dtype=args.dtype,
        tokenizer_dir=args.tokenizer,
        max_shard_bytes=int(args.max_shard_size_gb * 1e9),
    )
    print(f"exported {args.input} -> {out} in {time.perf_counter() - start:.1f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    imp = verbs.add_parser("hf-to-megatron", help="HF safetensors -> megatron dist checkpoint")
    imp.add_argument(
        "--hf-model", required=True, help="HF model directory (config.json + safetensors)"
    )
    imp.add_argument("--output", required=True, help="checkpoint root to write (release/)")
    for name in ("tp", "pp", "ep", "etp"):
        imp.add_argument(f"--{name}", type=int, default=1)
    imp.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], help="default: the HF config's dtype"
    )
    exp = verbs.add_parser("megatron-to-hf", help="megatron dist checkpoint -> HF safetensors")
    exp.add_argument("--input", required=True, help="checkpoint root or iteration directory")
    exp.add_argument("--output", required=True, help="HF model directory to write")
    exp.add_argument("--tokenizer", help="tokenizer directory to copy (default: from the run)")
    exp.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    exp.add_argument("--max-shard-size-gb", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        (hf_to_megatron if args.verb == "hf-to-megatron" else megatron_to_hf)(args)
    except (ConversionError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except RuntimeError as error:  # a rank failed: its traceback ends with the reason
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
