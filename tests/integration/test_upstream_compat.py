"""Unit: our preprocess_data.py / merge_datasets.py against files Megatron-LM's OWN scripts wrote.

tests/data/upstream_megatron/ holds .bin/.idx files made by NVIDIA/Megatron-LM's
tools/preprocess_data.py and tools/merge_datasets.py (the commit and every command are in its
README.md and make_upstream_outputs.sh; CI cannot fetch, so they are committed). Each case runs our
tool on the same input with the same flags and compares both files byte for byte.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from megatron_agentic.testing.data_fixtures import (
    GPT2_TINY,
    NLTK_DATA,
    UPSTREAM,
    cl100k_json_vocab,
    qwen3_tokenizer_dir,
)

INPUTS = UPSTREAM / "inputs"


def qwen():
    return ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", qwen3_tokenizer_dir()]


CASES = {  # case: (input file, flags after the tokenizer's), as in make_upstream_outputs.sh
    "qwen_plain": ("docs.jsonl", []),
    "qwen_eod": ("docs.jsonl", ["--append-eod"]),
    "nan": ("nan.jsonl", ["--append-eod"]),
    "presplit": ("presplit.jsonl", ["--append-eod"]),
    "part2": ("docs.jsonl", ["--workers", "2", "--partitions", "2", "--append-eod"]),
    "part2_seq": (
        "docs.jsonl",
        ["--workers", "2", "--partitions", "2", "--keep-sequential-samples", "--append-eod"],
    ),
    "part3": ("docs.jsonl", ["--workers", "3", "--partitions", "3", "--append-eod"]),
    "split": ("docs.jsonl", ["--append-eod", "--split-sentences"]),
    "split_keepnl": ("docs.jsonl", ["--append-eod", "--split-sentences", "--keep-newlines"]),
    "split_german": ("docs.jsonl", ["--append-eod", "--split-sentences", "--lang", "german"]),
}


def run_ours(*args) -> None:
    from tools.preprocess_data import main

    assert main([str(a) for a in args]) == 0


def assert_same_files(ours_prefix: Path, case: str) -> None:
    for suffix in (".bin", ".idx"):
        theirs = (UPSTREAM / f"{case}{suffix}").read_bytes()
        ours = Path(f"{ours_prefix}{suffix}").read_bytes()
        assert ours == theirs, f"{case}{suffix}: ours {len(ours)} bytes differ from upstream's"


@pytest.mark.parametrize("case", sorted(CASES))
def test_huggingface_cases_match_upstream_bytes(case, tmp_path):
    source, flags = CASES[case]
    extra = ["--nltk-data", NLTK_DATA] if "--split-sentences" in flags else []
    run_ours(
        "--input", INPUTS / source, "--output-prefix", tmp_path / "out", *qwen(), *flags, *extra
    )
    level = "sentence" if "--split-sentences" in flags else "document"
    assert_same_files(tmp_path / f"out_text_{level}", case)


def test_tiktokenizer_matches_upstream_bytes(tmp_path):
    vocab = cl100k_json_vocab(tmp_path / "cl100k_2000.json")
    run_ours(
        "--input",
        INPUTS / "docs.jsonl",
        "--output-prefix",
        tmp_path / "out",
        "--tokenizer-type",
        "TikTokenizer",
        "--tokenizer-model",
        vocab,
        "--vocab-size",
        "3000",
        "--append-eod",
    )
    assert_same_files(tmp_path / "out_text_document", "tiktoken")


def test_gpt2bpe_vocab_merge_files_match_upstream_bytes(tmp_path):
    run_ours(
        "--input",
        INPUTS / "docs.jsonl",
        "--output-prefix",
        tmp_path / "out",
        "--tokenizer-type",
        "GPT2BPETokenizer",
        "--vocab-file",
        GPT2_TINY / "vocab.json",
        "--merge-file",
        GPT2_TINY / "merges.txt",
        "--append-eod",
    )
    assert_same_files(tmp_path / "out_text_document", "gpt2")


def test_merge_directory_matches_upstream_bytes(tmp_path):
    from tools.merge_datasets import main

    folder = tmp_path / "in"
    folder.mkdir()
    for case in ("nan", "presplit", "qwen_eod"):
        for suffix in (".bin", ".idx"):
            shutil.copy(UPSTREAM / f"{case}{suffix}", folder / f"{case}{suffix}")
    assert main(["--input", str(folder), "--output-prefix", str(tmp_path / "out")]) == 0
    assert_same_files(tmp_path / "out", "merge_dir")
