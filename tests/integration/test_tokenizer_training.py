"""The locally trained tokenizer loads in transformers, round-trips text and keeps ReAct tags whole."""

import json
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from megatron_agentic.tokenizer_training import EOD, jsonl_texts, train_bpe_tokenizer

TEXTS = [
    "Mount Everest is 8,849 metres high. <think>search first</think>",
    "The Danube flows through Vienna, Budapest and Belgrade.",
] * 20


def test_trained_tokenizer_round_trips(tmp_path):
    train_bpe_tokenizer(TEXTS, tmp_path / "tok", vocab_size=300)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    ids = tokenizer.encode(TEXTS[0])
    assert tokenizer.decode(ids) == TEXTS[0]
    assert tokenizer.eos_token == EOD
    assert len(tokenizer.encode("<think>")) == 1
    assert len(tokenizer) <= 300


def test_cli_and_bad_line(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    subprocess.run(
        [
            sys.executable,
            "tools/train_tokenizer.py",
            "--input",
            str(corpus),
            "--output",
            str(tmp_path / "tok"),
            "--vocab-size",
            "280",
        ],
        check=True,
    )
    assert (tmp_path / "tok" / "tokenizer.json").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"title": "no text"}\n')
    with pytest.raises(ValueError, match=f"{bad}:2"):
        list(jsonl_texts([bad]))
