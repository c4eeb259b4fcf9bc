#!/usr/bin/env python3
"""Merge indexed datasets (e.g. one per SLURM array shard) into one, documents in the given order.

    python tools/merge_datasets.py --input shard0_text_document shard1_text_document \\
        --output-prefix all_text_document
    python tools/merge_datasets.py --input shards/ --output-prefix all_text_document

A directory (Megatron-LM's form) means every .bin/.idx pair in it, in name order. The result is
byte-identical to preprocessing the concatenated shards in one run (and to Megatron-LM's
merge_datasets.py on the same directory).
"""

import argparse
import os
import sys

from megatron_agentic.data.checks import DatasetError
from megatron_agentic.data.indexed import datasets_in_directory, merge_datasets


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input", nargs="+", required=True, help="dataset prefixes in order, or one directory"
    )
    parser.add_argument("--output-prefix", required=True, help="prefix of the merged dataset")
    args = parser.parse_args(argv)
    try:
        prefixes = args.input
        if len(prefixes) == 1 and os.path.isdir(prefixes[0]):
            prefixes = datasets_in_directory(prefixes[0])
        documents = merge_datasets(prefixes, args.output_prefix)
    except (OSError, ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"merged {len(prefixes)} datasets, {documents:,} documents -> {args.output_prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
