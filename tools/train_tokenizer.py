#!/usr/bin/env python3
"""Train a small byte-level BPE tokenizer from JSONL files (CPU runs and tests; no download).

    python tools/train_tokenizer.py --input corpus.jsonl [more.jsonl ...] --output DIR --vocab-size 512

The directory it writes loads with `--tokenizer-type HuggingFaceTokenizer --tokenizer-model DIR`.
"""

import argparse

from megatron_agentic.tokenizer_training import jsonl_texts, train_bpe_tokenizer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", required=True, help="JSONL files")
    parser.add_argument("--output", required=True, help="tokenizer directory to write")
    parser.add_argument("--json-key", default="text")
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args(argv)
    out = train_bpe_tokenizer(jsonl_texts(args.input, args.json_key), args.output, args.vocab_size)
    print(f"tokenizer written to {out}")


if __name__ == "__main__":
    main()
