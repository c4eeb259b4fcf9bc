"""Unit: bad datasets fail at the start of training with the file named (issue 19 items 3, 4, 6, 8).

Each test goes through `build_gpt_datasets` (what the trainer calls) on real megatron-core, single
process: a dataset from a larger vocabulary, a swapped .idx or truncated .bin, a split that gets
no documents (megatron-core would loop forever: a SIGALRM turns that hang into a failure), and
torn or stale index caches.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from megatron_agentic.data.blend import build_gpt_datasets, load_blend
from megatron_agentic.data.checks import DatasetError, meta_path, read_meta
from megatron_agentic.testing.data_fixtures import (
    make_texts,
    make_tokenizer,
    qwen3_tokenizer_dir,
    write_jsonl,
)
from megatron_agentic.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "bpe")


def preprocess(prefix: Path, texts, tokenizer_dir) -> str:
    from tools.preprocess_data import main

    corpus = write_jsonl(prefix.parent / f"{prefix.name}.jsonl", texts)
    args = ["--input", corpus, "--output-prefix", prefix, "--append-eod"]
    args += ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", tokenizer_dir]
    assert main([str(a) for a in args]) == 0
    return f"{prefix}_text_document"


def blend_file(folder: Path, prefix: str, split: str = "90,10,0") -> Path:
    path = folder / "blend.yaml"
    path.write_text(f'split: "{split}"\ndatasets:\n  - {{name: d, prefix: {prefix}, weight: 1}}\n')
    return path


def build(blend: Path, tok_dir, cache: Path, samples=(64, 8, 0)):
    tokenizer = build_tokenizer("HuggingFaceTokenizer", tok_dir)
    return build_gpt_datasets(load_blend(blend), tokenizer, 16, 3, samples, cache)


def test_dataset_of_a_larger_vocabulary_is_refused(tmp_path, tok):
    prefix = preprocess(tmp_path / "big", make_texts(50), qwen3_tokenizer_dir())
    record = read_meta(prefix)
    assert record["tokenizer"]["vocab_size"] == 151669 and record["max_id"] >= 151645
    with pytest.raises(DatasetError, match="tokenized with HuggingFaceTokenizer") as error:
        build(blend_file(tmp_path, prefix), tok, tmp_path / "cache")
    assert prefix in str(error.value) and "vocab 151,669" in str(error.value)
    shutil.rmtree(meta_path(prefix).parent)  # as Megatron-LM's own tool writes it: no record
    with pytest.raises(DatasetError, match=r"token id 151,645 >= the vocabulary size 400"):
        build(blend_file(tmp_path, prefix), tok, tmp_path / "cache")


def test_swapped_idx_and_truncated_bin_are_named(tmp_path, tok, capsys):
    from tools.dataset_stats import main as stats

    a = preprocess(tmp_path / "a", make_texts(60, seed=1), tok)
    b = preprocess(tmp_path / "b", make_texts(60, seed=2), tok)
    shutil.rmtree(meta_path(a).parent)  # the record would name the swap too; test the pair itself
    shutil.copy(f"{b}.idx", f"{a}.idx")
    with pytest.raises(DatasetError, match="belongs to another dataset") as error:
        build(blend_file(tmp_path, a), tok, tmp_path / "cache")
    assert f"{a}.bin" in str(error.value) and f"{a}.idx" in str(error.value)
    assert stats([a]) == 1 and f"{a}.bin" in capsys.readouterr().err

    data = Path(f"{b}.bin").read_bytes()
    Path(f"{b}.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated") as error:
        build(blend_file(tmp_path, b), tok, tmp_path / "cache")
    assert f"{b}.bin" in str(error.value)
    assert stats([b]) == 1 and "truncated" in capsys.readouterr().err


def test_split_with_no_documents_fails_at_start(tmp_path, tok):
    """In a subprocess with a timeout: without the check megatron-core spins forever in a
    builder thread, which no signal in this process could stop."""
    prefix = preprocess(tmp_path / "ten", make_texts(10, seed=4), tok)
    code = (
        "import sys; from tests.integration.test_dataset_checks import build; "
        "build(*sys.argv[1:4], samples=(64, 0, 0))"
    )
    blend = blend_file(tmp_path, prefix, split="95,5,0")
    command = [sys.executable, "-c", code, str(blend), str(tok), str(tmp_path / "95")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "DatasetError" in done.stderr
    assert f"{prefix}: split '95,5,0' gives the valid split 0 of its 10 documents" in done.stderr
    # the same documents with no valid split asked for build (here: nothing can hang)
    datasets = build(
        blend_file(tmp_path, prefix, split="100,0,0"), tok, tmp_path / "100", (64, 0, 0)
    )
    assert len(datasets[0]) == 64


def test_torn_and_stale_index_caches_are_named_and_rebuilt(tmp_path, tok, capsys):
    prefix = preprocess(tmp_path / "d", make_texts(80, seed=5), tok)
    blend, cache = blend_file(tmp_path, prefix), tmp_path / "cache"
    first = build(blend, tok, cache)[0]
    expected = [np.array(first[i]["tokens"]) for i in (0, 31, 63)]
    torn = sorted(cache.glob("*-GPTDataset-train-sample_index.npy"))[0]
    torn.write_bytes(torn.read_bytes()[:200])  # a kill during megatron-core's numpy.save
    capsys.readouterr()
    rebuilt = build(blend, tok, cache)[0]
    assert f"{torn} is torn" in capsys.readouterr().err
    assert all(np.array_equal(rebuilt[i]["tokens"], e) for i, e in zip((0, 31, 63), expected))

    preprocess(tmp_path / "d", make_texts(80, seed=6), tok)  # regenerated under the old cache
    fresh = build(blend, tok, tmp_path / "fresh")[0]
    capsys.readouterr()
    after = build(blend, tok, cache)[0]
    assert f"{prefix}.bin/.idx changed since" in capsys.readouterr().err
    for i in (0, 31, 63):
        assert np.array_equal(after[i]["tokens"], fresh[i]["tokens"])
