#!/usr/bin/env python3
"""Print documents, tokens and document-length percentiles of indexed datasets or a blend YAML.

Each dataset's .bin/.idx pair is validated first (data/checks.py); a bad one is named.

python tools/dataset_stats.py data/fas_text_document data/has_text_document
python tools/dataset_stats.py --blend examples/data_mixture/stage1.yaml
"""

import argparse
import sys

from megatron_agentic.data.blend import BlendError, load_blend
from megatron_agentic.data.checks import DatasetError, validate_pair
from megatron_agentic.data.indexed import dataset_stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="dataset prefixes")
    parser.add_argument("--blend", help="a blend YAML: report each of its datasets and weights")
    args = parser.parse_args(argv)
    rows = [(None, p) for p in args.prefixes]
    if args.blend:
        try:
            rows += [(d.weight, d.prefix) for d in load_blend(args.blend).datasets]
        except BlendError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    if not rows:
        parser.error("give dataset prefixes or --blend")
    for weight, prefix in rows:
        try:
            validate_pair(prefix)
            stats = dataset_stats(prefix)
        except (FileNotFoundError, DatasetError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(stats.row() + (f"  weight={weight:g}" if weight is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
