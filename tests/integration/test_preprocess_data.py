"""tools/preprocess_data.py: megatron-core reads the output, whose bytes equal Megatron-LM's."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

from megatron_agentic.testing.data_fixtures import (
    make_texts,
    make_tokenizer,
    qwen3_tokenizer_dir,
    write_jsonl,
)
from megatron_agentic.tokenizer import build_tokenizer

TOOL = [sys.executable, "tools/preprocess_data.py"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "bpe")


def run_tool(*args, check=True, capsys=None):
    """The tool in this process (fast); with capsys, returns (returncode, stdout, stderr)."""
    from tools.preprocess_data import main

    code = main([str(a) for a in args])
    if check:
        assert code == 0
    if capsys is not None:
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return code


def megatron_lm_reference(texts, tokenizer_dir: Path, prefix: Path) -> None:
    """What Megatron-LM's tools/preprocess_data.py writes (--append-eod, no sentence splitting):
    its Encoder.encode + IndexedDatasetBuilder.add_document, with megatron-core's own HF tokenizer."""
    from megatron.core.datasets.indexed_dataset import DType
    from megatron.core.tokenizers.text.libraries.huggingface_tokenizer import HuggingFaceTokenizer

    hf = HuggingFaceTokenizer(str(tokenizer_dir))
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=DType.optimal_dtype(hf.vocab_size))
    for text in texts:
        ids = hf.text_to_ids(text)
        doc_ids, sentence_lens = (list(ids), [len(ids)]) if ids else ([], [])
        if doc_ids:
            doc_ids.append(hf.eos_id)
            sentence_lens[-1] += 1
        builder.add_document(torch.tensor(doc_ids, dtype=torch.long), sentence_lens)
    builder.finalize(f"{prefix}.idx")


def test_bytes_equal_megatron_lm_and_megatron_core_reads_them(tmp_path, tokenizer_dir):
    texts = make_texts(500)
    corpus = write_jsonl(tmp_path / "in.jsonl", texts)
    subprocess.run(
        [
            *TOOL,
            "--input",
            corpus,
            "--output-prefix",
            tmp_path / "ours",
            "--tokenizer-type",
            "HuggingFaceTokenizer",
            "--tokenizer-model",
            tokenizer_dir,
            "--append-eod",
            "--workers",
            "2",
            "--batch-size",
            "64",
        ],
        check=True,
    )
    megatron_lm_reference(texts, tokenizer_dir, tmp_path / "reference")
    ours = tmp_path / "ours_text_document"
    for suffix in (".bin", ".idx"):
        assert (
            Path(f"{ours}{suffix}").read_bytes() == (tmp_path / f"reference{suffix}").read_bytes()
        )

    dataset = IndexedDataset(str(ours))
    tokenizer = build_tokenizer("HuggingFaceTokenizer", tokenizer_dir)
    assert len(dataset.document_indices) - 1 == len(texts)
    assert dataset.index.dtype == np.uint16
    first = next(i for i, t in enumerate(texts) if t)
    assert dataset[first][-1] == tokenizer.eod
    assert tokenizer.detokenize(dataset[first][:-1].tolist()) == texts[first]


def test_qwen3_tokenizer_is_int32_eod_is_config_eos_or_chosen_token(tmp_path):
    """Megatron-LM ends documents with the eos_token of tokenizer_config.json (<|im_end|> for this
    instruct config); --eod-token picks another (Qwen3's document separator <|endoftext|>)."""
    qwen_dir = qwen3_tokenizer_dir()
    corpus = write_jsonl(tmp_path / "in.jsonl", ["Hello world", "Mount Everest is 8,849 metres."])
    common = ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", qwen_dir]
    run_tool("--input", corpus, "--output-prefix", tmp_path / "qwen", *common, "--append-eod")
    run_tool(
        "--input",
        corpus,
        "--output-prefix",
        tmp_path / "eot",
        *common,
        "--append-eod",
        "--eod-token",
        "<|endoftext|>",
    )
    dataset = IndexedDataset(str(tmp_path / "qwen_text_document"))
    assert dataset.index.dtype == np.int32
    assert dataset[0].tolist() == [9707, 1879, 151645]  # "Hello world" <|im_end|>
    chosen = IndexedDataset(str(tmp_path / "eot_text_document"))  # kept: its arrays view its mmap
    assert chosen[0].tolist() == [9707, 1879, 151643]


def test_sentencepiece_and_tiktoken(tmp_path):
    import sentencepiece

    texts = make_texts(200)
    corpus = write_jsonl(tmp_path / "in.jsonl", texts)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(make_texts(400, seed=3)),
        model_prefix=str(tmp_path / "sp"),
        vocab_size=120,
        model_type="unigram",
        eos_id=2,
        minloglevel=2,
    )
    for kind, model, options in [
        ("SentencePieceTokenizer", tmp_path / "sp.model", {}),
        ("TikTokenizer", "cl100k_base", {"vocab_size": 100256 + 1000}),  # all ranks, 1000 specials
    ]:
        run_tool(
            *[f"--{k.replace('_', '-')}={v}" for k, v in options.items()],
            "--input",
            corpus,
            "--output-prefix",
            tmp_path / kind,
            "--tokenizer-type",
            kind,
            "--tokenizer-model",
            model,
            "--append-eod",
        )
        tokenizer = build_tokenizer(kind, model, **options)
        dataset = IndexedDataset(str(tmp_path / f"{kind}_text_document"))
        non_empty = [t for t in texts if t]  # an empty document has no sequence
        assert len(dataset) == len(non_empty) and len(dataset.document_indices) == len(texts) + 1
        for i in (0, 5, 77, len(non_empty) - 1):
            assert dataset[i].tolist() == tokenizer.tokenize(non_empty[i]) + [tokenizer.eod]
    assert IndexedDataset(str(tmp_path / "TikTokenizer_text_document")).index.dtype == np.int32


def test_inputs_dir_glob_gz_zst_keys_and_merge(tmp_path, tokenizer_dir):
    import zstandard

    texts = make_texts(300)
    parts = [texts[:100], texts[100:200], texts[200:]]
    raw = tmp_path / "raw"
    write_jsonl(raw / "a.jsonl", parts[0], title="t")
    with gzip.open(raw / "b.jsonl.gz", "wt") as handle:
        handle.write(write_jsonl(tmp_path / "b.jsonl", parts[1], title="t").read_text())
    data = write_jsonl(tmp_path / "c.jsonl", parts[2], title="t").read_bytes()
    (raw / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    common = [
        "--tokenizer-type",
        "HuggingFaceTokenizer",
        "--tokenizer-model",
        tokenizer_dir,
        "--append-eod",
        "--json-keys",
        "text",
        "title",
    ]
    whole = write_jsonl(tmp_path / "whole.jsonl", texts, title="t")
    run_tool("--input", whole, "--output-prefix", tmp_path / "single", *common)
    run_tool("--input", raw, "--output-prefix", tmp_path / "dir", *common)
    run_tool(
        "--input",
        str(raw / "*.jsonl*"),
        "--output-prefix",
        tmp_path / "parts",
        *common,
        "--partitions",
        "3",
        "--keep-sequential-samples",  # contiguous parts: one run's order (round-robin: upstream)
        "--workers",
        "2",
    )
    shards = []
    for i, part in enumerate(parts):
        shard = write_jsonl(tmp_path / f"shard{i}.jsonl", part, title="t")
        run_tool("--input", shard, "--output-prefix", tmp_path / f"shard{i}", *common)
        shards.append(tmp_path / f"shard{i}_text_document")
    from tools.merge_datasets import main as merge_main

    assert (
        merge_main(["--input", *map(str, shards), "--output-prefix", str(tmp_path / "merged")]) == 0
    )
    for key in ("text", "title"):
        reference = {
            s: Path(f"{tmp_path}/single_{key}_document{s}").read_bytes() for s in (".bin", ".idx")
        }
        for name in ("dir", "parts"):
            for suffix, content in reference.items():
                assert Path(f"{tmp_path}/{name}_{key}_document{suffix}").read_bytes() == content
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"merged{suffix}").read_bytes() == Path(
            f"{tmp_path}/single_text_document{suffix}"
        ).read_bytes()


@pytest.mark.parametrize(
    "line, reason",
    [
        ("{not json", "not valid JSON"),
        ('{"title": "x"}', "no key 'text'"),
        ('{"text": 5}', "key 'text' is int, not a string"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, tokenizer_dir, line, reason, capsys):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text('{"text": "good one"}\n' + line + '\n{"text": "good two"}\n')
    args = [
        "--input",
        corpus,
        "--output-prefix",
        tmp_path / "out",
        "--tokenizer-type",
        "HuggingFaceTokenizer",
        "--tokenizer-model",
        tokenizer_dir,
    ]
    code, _, err = run_tool(*args, check=False, capsys=capsys)
    assert code == 1
    assert f"{corpus}:2: {reason}" in err
    assert not list(tmp_path.glob("out_*"))  # nothing that looks like (or is part of) a dataset
    code, out, _ = run_tool(*args, "--skip-bad-lines", capsys=capsys)
    assert "1 bad lines skipped" in out
    assert len(IndexedDataset(str(tmp_path / "out_text_document")).document_indices) == 3


def test_missing_punkt_data_is_one_clear_error(tmp_path, tokenizer_dir, capsys):
    """Offline, --split-sentences without punkt data for --lang says where it looked and how to
    install it (nothing is downloaded); no traceback."""
    corpus = write_jsonl(tmp_path / "in.jsonl", ["One. Two."])
    code, _, err = run_tool(
        "--input",
        corpus,
        "--output-prefix",
        tmp_path / "o",
        "--split-sentences",
        "--lang",
        "nolanguage",
        "--nltk-data",
        tmp_path,
        "--tokenizer-type",
        "HuggingFaceTokenizer",
        "--tokenizer-model",
        tokenizer_dir,
        check=False,
        capsys=capsys,
    )
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "no punkt data for --lang 'nolanguage' (tokenizers/punkt_tab/nolanguage/)" in err
    assert str(tmp_path) in err and "nltk.downloader" in err and "nothing is downloaded" in err


def test_nan_lines_are_read_not_skipped_and_merge_dir_needs_pairs(tmp_path, tokenizer_dir, capsys):
    from tools.merge_datasets import main as merge

    corpus = tmp_path / "in.jsonl"
    corpus.write_text('{"text": "a", "s": NaN}\n{"text": "b", "s": -Infinity}\n{"text": "c"}\n')
    common = ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", tokenizer_dir]
    _, out, _ = run_tool(
        "--input",
        corpus,
        "--output-prefix",
        tmp_path / "d" / "x",
        *common,
        "--skip-bad-lines",
        capsys=capsys,
    )
    assert "done: 3 documents" in out and "0 bad lines skipped" in out
    Path(f"{tmp_path}/d/x_text_document.idx").unlink()
    assert merge(["--input", str(tmp_path / "d"), "--output-prefix", str(tmp_path / "m")]) == 1
    assert f"missing {tmp_path}/d/x_text_document.idx" in capsys.readouterr().err


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_cut_compressed_input_is_an_error_not_fewer_documents(
    tmp_path, tokenizer_dir, codec, capsys
):
    """A file cut short in transfer: zstandard's own stream reader ends quietly at the cut, so
    the dataset would silently miss documents; the tool names the file instead."""
    import zstandard

    data = write_jsonl(tmp_path / "all.jsonl", make_texts(200), title="t").read_bytes()
    packed = gzip.compress(data) if codec == "gzip" else zstandard.ZstdCompressor().compress(data)
    corpus = tmp_path / "in.jsonl.part"  # known by its first bytes, not its name
    corpus.write_bytes(packed[: len(packed) * 2 // 3])
    args = ["--input", corpus, "--output-prefix", tmp_path / "out"]
    args += ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", tokenizer_dir]
    code, _, err = run_tool(*args, check=False, capsys=capsys)
    assert code == 1 and f"{corpus}: a damaged {codec} file after" in err, err
    assert not list(tmp_path.glob("out_*"))
