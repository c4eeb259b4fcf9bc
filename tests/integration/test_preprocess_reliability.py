"""Preprocessing failures users hit in Megatron-LM: memory growing with the input (#444), many
pre-sharded inputs refused (#1135), and a kill -9 leaving a dataset that looks complete."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.measure import run_measured
from megatron_agentic.data.indexed import dataset_stats
from megatron_agentic.testing.data_fixtures import make_texts, make_tokenizer, write_jsonl

TOOL = [sys.executable, "tools/preprocess_data.py"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "bpe")


def _big_jsonl(path: Path, megabytes: int) -> Path:
    """~2 KB lines: a 40-word text plus a 1.7 KB metadata field, as crawled records often carry
    (the whole line is read and parsed; the text is tokenized). A few distinct lines repeated."""
    rng = random.Random(0)
    words = "the river city capital mountain population founded year search answer tool".split()
    lines = [
        json.dumps(
            {
                "text": " ".join(rng.choice(words) for _ in range(40)),
                "meta": " ".join(rng.choice(words) for _ in range(280)),
            }
        )
        + "\n"
        for _ in range(64)
    ]
    block = "".join(lines).encode()
    with open(path, "wb") as handle:
        for _ in range(megabytes * 1_000_000 // len(block) + 1):
            handle.write(block)
    return path


def test_peak_memory_is_flat_in_input_size(tokenizer, tmp_path):
    small = _big_jsonl(tmp_path / "small.jsonl", 50)
    big = _big_jsonl(tmp_path / "big.jsonl", 500)
    common = [
        "--tokenizer-type",
        "HuggingFaceTokenizer",
        "--tokenizer-model",
        str(tokenizer),
        "--append-eod",
        "--workers",
        "2",
        "--log-interval",
        "1000000",
    ]
    rss_small = run_measured(
        [*TOOL, "--input", str(small), "--output-prefix", str(tmp_path / "s"), *common]
    ).peak_rss_mb
    small.unlink()
    rss_big = run_measured(
        [*TOOL, "--input", str(big), "--output-prefix", str(tmp_path / "b"), *common]
    ).peak_rss_mb
    print(f"peak RSS: 50 MB input {rss_small:.0f} MB, 500 MB input {rss_big:.0f} MB")
    assert rss_big <= 1.5 * rss_small
    with open(big, "rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b""))
    assert dataset_stats(tmp_path / "b_text_document").documents == lines  # all of it went through


def test_two_thousand_gzipped_shards_make_one_dataset(tokenizer, tmp_path):
    texts = make_texts(4000, seed=5, words=12)
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(2000):
        with gzip.open(shards / f"part-{i:05d}.jsonl.gz", "wt") as handle:
            handle.writelines(json.dumps({"text": t}) + "\n" for t in texts[2 * i : 2 * i + 2])
    from tools.preprocess_data import main

    assert (
        main(
            [
                "--input",
                str(shards),
                "--output-prefix",
                str(tmp_path / "all"),
                "--tokenizer-type",
                "HuggingFaceTokenizer",
                "--tokenizer-model",
                str(tokenizer),
                "--append-eod",
                "--workers",
                "3",
                "--partitions",
                "7",
                "--keep-sequential-samples",  # contiguous parts: one run's order
                "--log-interval",
                "1000000",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--input",
                str(write_jsonl(tmp_path / "all.jsonl", texts)),
                "--output-prefix",
                str(tmp_path / "one"),
                "--tokenizer-type",
                "HuggingFaceTokenizer",
                "--tokenizer-model",
                str(tokenizer),
                "--append-eod",
                "--log-interval",
                "1000000",
            ]
        )
        == 0
    )
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"all_text_document{suffix}").read_bytes() == (
            tmp_path / f"one_text_document{suffix}"
        ).read_bytes()


def test_kill_9_mid_run_leaves_nothing_complete_and_rerun_matches(tokenizer, tmp_path):
    corpus = _big_jsonl(tmp_path / "in.jsonl", 60)
    command = [
        *TOOL,
        "--input",
        str(corpus),
        "--output-prefix",
        str(tmp_path / "out"),
        "--tokenizer-type",
        "HuggingFaceTokenizer",
        "--tokenizer-model",
        str(tokenizer),
        "--append-eod",
        "--log-interval",
        "1000000",
    ]
    reference = tmp_path / "ref"
    subprocess.run([*command[:5], str(reference), *command[6:]], check=True)
    proc = subprocess.Popen(command)
    partial = tmp_path / "out_text_document.bin.partial"
    while proc.poll() is None and not (partial.exists() and partial.stat().st_size > 1_000_000):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out_text_document.idx").exists()
    subprocess.run(command, check=True)
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"out_text_document{suffix}").read_bytes() == (
            tmp_path / f"ref_text_document{suffix}"
        ).read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def _tool_in_process(capsys, *args) -> tuple[int, str]:
    from tools.preprocess_data import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_unwritable_output_is_one_error_line(tokenizer, tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "in.jsonl", make_texts(5))
    common = ["--input", corpus, "--tokenizer-type", "HuggingFaceTokenizer"]
    common += ["--tokenizer-model", tokenizer]
    (tmp_path / "afile").write_text("x")
    code, err = _tool_in_process(capsys, *common, "--output-prefix", tmp_path / "afile" / "out")
    assert code == 1 and "Traceback" not in err
    assert (
        err.strip()
        == f"error: --output-prefix {tmp_path}/afile/out: {tmp_path}/afile is a file, not a directory"
    )
    if os.geteuid() != 0:  # root writes into read-only folders
        readonly = tmp_path / "ro"
        readonly.mkdir(mode=0o555)
        code, err = _tool_in_process(capsys, *common, "--output-prefix", readonly / "out")
        assert code == 1 and err.startswith(f"error: --output-prefix {readonly}/out: cannot write")
        assert len(err.strip().splitlines()) == 1


def test_failed_partition_leaves_no_finished_looking_part(tokenizer, tmp_path, capsys):
    """--partitions 2, a bad line in the 2nd file: exit 1 naming it, and no .bin/.idx anywhere."""
    write_jsonl(tmp_path / "in" / "a.jsonl", make_texts(40))
    bad = tmp_path / "in" / "b.jsonl"
    bad.write_text('{"text": "fine"}\n{broken\n{"text": "fine too"}\n')
    code, err = _tool_in_process(
        capsys,
        "--input",
        tmp_path / "in",
        "--output-prefix",
        tmp_path / "out" / "o",
        "--tokenizer-type",
        "HuggingFaceTokenizer",
        "--tokenizer-model",
        tokenizer,
        "--partitions",
        "2",
        "--workers",
        "2",
    )
    assert code == 1 and f"{bad}:2: not valid JSON" in err
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.suffix in (".bin", ".idx")]
    assert leftovers == [] and list((tmp_path / "out").iterdir()) == []


def test_progress_shows_percent_and_eta(tokenizer, tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "in.jsonl", make_texts(400))
    code, err = _tool_in_process(
        capsys,
        "--input",
        corpus,
        "--output-prefix",
        tmp_path / "o",
        "--log-interval",
        "100",
        "--tokenizer-type",
        "HuggingFaceTokenizer",
        "--tokenizer-model",
        tokenizer,
        "--batch-size",
        "50",
    )
    lines = [line for line in err.splitlines() if " documents | " in line]
    assert code == 0 and len(lines) == 4
    percents = [float(line.split(" | ")[1].rstrip("%")) for line in lines]
    assert percents == sorted(percents) and 0 < percents[0] < 50 and percents[-1] == 100.0
    assert all(" | ETA " in line for line in lines) and lines[-1].endswith("ETA 0:00:00")
