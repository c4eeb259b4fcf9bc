#!/usr/bin/env python3
"""Merge indexed datasets (e.g. one per SLURM array shard) into one, documents in the given order.

    python tools/merge_datasets.py --input shard0_text_document shard1_text_document \\
        --output-prefix all_text_document

The result is byte-identical to preprocessing the concatenated shards in one run.
"""

import argparse
import sys

from megatron_agentic.data.indexed import merge_datasets


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", required=True, help="dataset prefixes, in order")
    parser.add_argument("--output-prefix", required=True, help="prefix of the merged dataset")
    args = parser.parse_args(argv)
    try:
        documents = merge_datasets(args.input, args.output_prefix)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"merged {len(args.input)} datasets, {documents:,} documents -> {args.output_prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
