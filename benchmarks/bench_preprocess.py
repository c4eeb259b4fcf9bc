#!/usr/bin/env python3
"""Preprocessing speed and memory: tools/preprocess_data.py against the bare Rust tokenizer.

Generates a deterministic JSONL corpus, then, in one run, times
  (a) the bare `tokenizers` baseline: read the lines, parse the JSON, `encode_batch` the texts
      (parallel over the given threads), and nothing else;
  (b) tools/preprocess_data.py with the same tokenizer and --workers, writing the .bin/.idx;
and prints both times, their ratio, and each one's peak RSS (each runs in a fresh process).

    python benchmarks/bench_preprocess.py --size-mb 200 --workers 2 [--tokenizer-model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.measure import run_measured  # noqa: E402
from megatron_agentic.testing.data_fixtures import qwen3_tokenizer_dir  # noqa: E402

BASELINE = r"""
import json, os, sys, time
os.environ["TOKENIZERS_PARALLELISM"] = "true"
os.environ["RAYON_NUM_THREADS"] = sys.argv[3]
from tokenizers import Tokenizer
tokenizer = Tokenizer.from_file(sys.argv[2])
start, batch, tokens = time.perf_counter(), [], 0
with open(sys.argv[1], "rb") as handle:
    for line in handle:
        batch.append(json.loads(line)["text"])
        if len(batch) == 1024:
            tokens += sum(len(e.ids) for e in tokenizer.encode_batch(batch)); batch = []
tokens += sum(len(e.ids) for e in tokenizer.encode_batch(batch))
print(time.perf_counter() - start, tokens)
"""

WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there one all we their has been if more when will would "
    "who so no river city capital population founded university scientist discovered element "
    "planet company headquarters search visit answer tool result Vienna Danube Everest 1867 8,849"
).split()


def write_corpus(path: Path, size_mb: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < size_mb * 1_000_000:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 600)))
            line = json.dumps({"text": text.capitalize() + ".", "id": written}) + "\n"
            handle.write(line)
            written += len(line)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tokenizer-model", help="HF tokenizer dir (default: the real Qwen3 one)")
    args = parser.parse_args(argv)
    tokenizer_dir = Path(args.tokenizer_model or qwen3_tokenizer_dir())
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        size = write_corpus(corpus, args.size_mb)
        # Warm the page cache so neither run pays the first read.
        subprocess.run(["cat", str(corpus)], stdout=subprocess.DEVNULL, check=True)
        baseline = run_measured(
            [
                sys.executable,
                "-c",
                BASELINE,
                str(corpus),
                str(tokenizer_dir / "tokenizer.json"),
                str(args.workers),
            ]
        )
        tool = run_measured(
            [
                sys.executable,
                "tools/preprocess_data.py",
                "--input",
                str(corpus),
                "--output-prefix",
                str(Path(tmp) / "out"),
                "--tokenizer-type",
                "HuggingFaceTokenizer",
                "--tokenizer-model",
                str(tokenizer_dir),
                "--append-eod",
                "--workers",
                str(args.workers),
                "--log-interval",
                "1000000",
            ]
        )
    tokens = int(baseline.stdout.split()[1])
    print(
        f"corpus: {size / 1e6:.0f} MB, {tokens:,} tokens, tokenizer {tokenizer_dir.name}, "
        f"{args.workers} workers, {os.cpu_count()} cores"
    )
    print(
        f"bare tokenizers encode_batch (read+parse+encode): {baseline.seconds:7.2f} s  (process wall)"
        f"  peak RSS {baseline.peak_rss_mb:.0f} MB"
    )
    print(
        f"tools/preprocess_data.py (+ write .bin/.idx):      {tool.seconds:7.2f} s  (process wall)"
        f"  peak RSS {tool.peak_rss_mb:.0f} MB"
    )
    print(f"ratio preprocess/bare: {tool.seconds / baseline.seconds:.3f}   (target <= 1.1)")


if __name__ == "__main__":
    main()
