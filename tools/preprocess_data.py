#!/usr/bin/env python3
"""Preprocess JSONL into Megatron indexed datasets (`{prefix}_{key}_document.bin/.idx`).

Megatron-LM's tools/preprocess_data.py interface, flag meanings and output bytes; see docs/data.md.
Example:

    python tools/preprocess_data.py --input data/raw/ --output-prefix data/fas \\
        --tokenizer-type HuggingFaceTokenizer --tokenizer-model /models/Qwen3-30B-A3B-Base \\
        --append-eod --workers 16
"""

import argparse
import sys

from megatron_agentic.data.checks import DatasetError
from megatron_agentic.data.jsonl import BadLineError
from megatron_agentic.data.preprocess import PreprocessConfig, preprocess
from megatron_agentic.data.sentences import PunktMissingError
from megatron_agentic.tokenizer import TOKENIZER_TYPES


def _parser() -> argparse.ArgumentParser:
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
        help="keys to extract; one dataset per key (default: text). A value is a string or, "
        "as in Megatron-LM, a list of pre-split sentences",
    )
    group.add_argument(
        "--split-sentences",
        action="store_true",
        help="split texts into sentences with nltk punkt (one sequence each); outputs are "
        "named {prefix}_{key}_sentence.*",
    )
    group.add_argument(
        "--keep-newlines",
        action="store_true",
        help="with --split-sentences: keep the whitespace (newlines) after each sentence",
    )
    group.add_argument(
        "--lang", default="english", help="punkt language for --split-sentences (default english)"
    )
    group.add_argument(
        "--nltk-data",
        help="folder holding tokenizers/punkt_tab/<lang>/ (default: $NLTK_DATA and nltk's "
        "folders; nothing is downloaded)",
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
        help="HF tokenizer dir / SentencePiece .model / TikTokenizer .json or .tiktoken file "
        "or local encoding name",
    )
    group.add_argument("--vocab-file", help="GPT2BPETokenizer: vocab.json")
    group.add_argument("--merge-file", help="GPT2BPETokenizer: merges.txt")
    group.add_argument(
        "--vocab-size",
        type=int,
        help="TikTokenizer: vocabulary size incl. special tokens (default 131072)",
    )
    group.add_argument("--tiktoken-pattern", choices=("v1", "v2"), help="default v2")
    group.add_argument(
        "--tiktoken-num-special-tokens",
        type=int,
        default=1000,
        help="TikTokenizer: special tokens before the BPE ranks (default 1000)",
    )
    group.add_argument(
        "--append-eod",
        action="store_true",
        help="end every document with the tokenizer's EOD (HF: the eos_token of "
        "tokenizer_config.json, as Megatron-LM)",
    )
    group.add_argument(
        "--eod-token",
        help="end documents with this token instead, e.g. '<|endoftext|>' for Qwen3 instruct "
        "tokenizers (whose eos is <|im_end|>)",
    )
    group = parser.add_argument_group("output")
    group.add_argument("--output-prefix", required=True, help="writes {prefix}_{key}_document.*")
    group = parser.add_argument_group("runtime")
    group.add_argument("--workers", type=int, default=1, help="tokenizer threads in all")
    group.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="deal input lines round-robin to this many processes, then merge the parts in "
        "order (Megatron-LM's document order)",
    )
    group.add_argument(
        "--keep-sequential-samples",
        action="store_true",
        help="with --partitions: contiguous runs of lines per partition (input order kept)",
    )
    group.add_argument("--log-interval", type=int, default=10000, help="progress every N documents")
    group.add_argument("--batch-size", type=int, default=1024, help="documents per encoder batch")
    return parser


def parse_args(argv=None) -> PreprocessConfig:
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("workers", "partitions", "log_interval", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.tokenizer_type != "GPT2BPETokenizer" and not args.tokenizer_model:
        parser.error(f"--tokenizer-type {args.tokenizer_type} needs --tokenizer-model")
    if args.tokenizer_type == "GPT2BPETokenizer" and not (args.vocab_file and args.merge_file):
        parser.error("--tokenizer-type GPT2BPETokenizer needs --vocab-file and --merge-file")
    return PreprocessConfig(**vars(args))


def main(argv=None) -> int:
    config = parse_args(argv)
    try:
        summary = preprocess(config)
    except (BadLineError, DatasetError, PunktMissingError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
