#!/usr/bin/env python3
"""Preprocess JSONL into Megatron indexed datasets (`{prefix}_{key}_document.bin/.idx`).

Megatron-LM's interface and output bytes; see docs/data.md. Example:

    python tools/preprocess_data.py --input data/raw/ --output-prefix data/fas \\
        --tokenizer-type HuggingFaceTokenizer --tokenizer-model /models/Qwen3-30B-A3B-Base \\
        --append-eod --workers 16
"""

import argparse
import sys

from megatron_agentic.data.jsonl import BadLineError
from megatron_agentic.data.preprocess import PreprocessConfig, preprocess
from megatron_agentic.tokenizer import TOKENIZER_TYPES


def parse_args(argv=None) -> PreprocessConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_argument_group("input")
    group.add_argument(
        "--input",
        required=True,
        nargs="+",
        help="JSONL file(s), glob(s) or directories (.jsonl, .jsonl.gz, .jsonl.zst)",
    )
    group.add_argument(
        "--json-keys",
        nargs="+",
        default=["text"],
        help="keys to extract; one dataset per key (default: text)",
    )
    group.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="skip (and count) lines that are not JSON, lack a key or hold a non-string",
    )
    group = parser.add_argument_group("tokenizer")
    group.add_argument("--tokenizer-type", required=True, choices=TOKENIZER_TYPES)
    group.add_argument(
        "--tokenizer-model",
        required=True,
        help="HF tokenizer dir / SentencePiece .model / .tiktoken file or name",
    )
    group.add_argument("--append-eod", action="store_true", help="end every document with EOD")
    group = parser.add_argument_group("output")
    group.add_argument("--output-prefix", required=True, help="writes {prefix}_{key}_document.*")
    group = parser.add_argument_group("runtime")
    group.add_argument("--workers", type=int, default=1, help="tokenizer threads in all")
    group.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="split the input files into this many groups processed in parallel "
        "processes, then merged in order (same bytes as one run)",
    )
    group.add_argument("--log-interval", type=int, default=10000, help="progress every N documents")
    group.add_argument("--batch-size", type=int, default=1024, help="documents per encoder batch")
    args = parser.parse_args(argv)
    for name in ("workers", "partitions", "log_interval", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return PreprocessConfig(**vars(args))


def main(argv=None) -> int:
    config = parse_args(argv)
    try:
        summary = preprocess(config)
    except (BadLineError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
