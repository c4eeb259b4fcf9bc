#!/usr/bin/env python3
"""Convert Qwen3 / Qwen3-MoE checkpoints between Hugging Face and megatron-core (dist checkpoint).

    # import the base model for Stage 1 (one local process per rank of the layout)
    python tools/convert_checkpoint.py hf-to-megatron --hf-model /models/Qwen3-30B-A3B-Base \\
        --output /ckpt/qwen3-30b-a3b-base --tp 1 --pp 4 --ep 8
    # export a trained checkpoint for transformers / vLLM
    python tools/convert_checkpoint.py megatron-to-hf --input /ckpt/stage2 --output /models/agentic

The imported checkpoint is a `release` checkpoint: the trainer's `checkpoint.load` starts from it
under any layout (dist checkpoints reshard on load). See docs/conversion.md. Nothing heavy
(torch, megatron-core) is imported before the arguments are parsed, so `--help` is instant.
"""

import argparse
import sys
import time

DTYPES = ["float32", "bfloat16", "float16"]


def hf_to_megatron(args) -> None:
    from megatron_agentic.conversion.engine import check_import, import_rank
    from megatron_agentic.conversion.hf_files import hf_dtype
    from megatron_agentic.local_ranks import run_on_ranks
    from megatron_agentic.parallel import ParallelConfig

    layout = ParallelConfig(
        tp=args.tp, pp=args.pp, ep=args.ep, etp=args.etp, use_distributed_optimizer=False
    )
    world_size = check_import(args.hf_model, layout)
    dtype = args.dtype or hf_dtype(args.hf_model)
    start = time.perf_counter()
    run_on_ranks(import_rank, world_size, args.hf_model, args.output, layout, dtype)
    print(
        f"imported {args.hf_model} -> {args.output}/release ({dtype}, tp={args.tp} pp={args.pp} "
        f"ep={args.ep} etp={args.etp}, {world_size} ranks) in {time.perf_counter() - start:.1f} s"
    )


def megatron_to_hf(args) -> None:
    from megatron_agentic.conversion.engine import export_hf_checkpoint

    start = time.perf_counter()
    out = export_hf_checkpoint(
        args.input,
        args.output,
        dtype=args.dtype,
        tokenizer_dir=args.tokenizer,
        max_shard_bytes=int(args.max_shard_size_gb * 1e9),
        overwrite=args.overwrite,
    )
    print(f"exported {args.input} -> {out} in {time.perf_counter() - start:.1f} s")


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = main_parser.add_subparsers(dest="verb", required=True)
    imp = verbs.add_parser("hf-to-megatron", help="HF safetensors -> megatron dist checkpoint")
    imp.add_argument(
        "--hf-model", required=True, help="HF model directory (config.json + safetensors)"
    )
    imp.add_argument("--output", required=True, help="checkpoint root to write (release/)")
    sizes = {
        "tp": "tensor-parallel size",
        "pp": "pipeline-parallel size",
        "ep": "expert-parallel size (divides the expert count; 1 for dense Qwen3)",
        "etp": "expert tensor-parallel size",
    }
    for name, text in sizes.items():
        imp.add_argument(f"--{name}", type=int, default=1, help=f"{text} (default 1)")
    imp.add_argument("--dtype", choices=DTYPES, help="weights' dtype (default: the HF config's)")
    exp = verbs.add_parser("megatron-to-hf", help="megatron dist checkpoint -> HF safetensors")
    exp.add_argument("--input", required=True, help="checkpoint root or iteration directory")
    exp.add_argument(
        "--output",
        required=True,
        help="HF model directory to write: new, empty, or an earlier export of this tool",
    )
    exp.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty --output that is not an earlier export (same-named files "
        "are replaced, others kept)",
    )
    exp.add_argument(
        "--tokenizer",
        help="directory with the tokenizer (and base model's generation_config.json) to copy "
        "(default: the checkpoint's, else the run's tokenizer directory)",
    )
    exp.add_argument("--dtype", choices=DTYPES, help="weights' dtype (default: the checkpoint's)")
    exp.add_argument(
        "--max-shard-size-gb",
        type=float,
        default=5.0,
        help="largest safetensors shard, in GB (default 5)",
    )
    return main_parser


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from megatron_agentic.conversion import ConversionError

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
