"""Trainer test helpers: a small preprocessed dataset + blend + tokenizer, the trainer's command
line under torchrun, and a reader of W&B's offline run log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_agentic.testing.data_fixtures import make_texts, make_tokenizer, write_jsonl
from megatron_agentic.testing.distributed import run_distributed

REPO = Path(__file__).resolve().parents[2]
RECIPE = "examples/recipes/tiny_stage1.yaml"


def make_training_data(root: Path) -> tuple[Path, Path]:
    """(blend YAML, tokenizer dir) of a 2-dataset blend made by tools/preprocess_data.py."""
    from tools.preprocess_data import main

    tokenizer = make_tokenizer(root / "tokenizer", vocab_size=400)
    for name, seed in (("agentic", 11), ("general", 12)):
        corpus = write_jsonl(root / f"{name}.jsonl", make_texts(400, seed=seed, words=120))
        assert (
            main(
                [
                    "--input",
                    str(corpus),
                    "--output-prefix",
                    str(root / name),
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
    blend = root / "blend.yaml"
    blend.write_text(
        'split: "95,5,0"\ndatasets:\n'
        "  - {name: agentic, prefix: agentic_text_document, weight: 70}\n"
        "  - {name: general, prefix: general_text_document, weight: 30}\n"
    )
    return blend, tokenizer


def data_overrides(root: Path) -> list[str]:
    """The `data.*` overrides of a run on `make_training_data(root)` (index caches in root)."""
    blend, tokenizer = make_training_data(root)
    return [
        f"data.blend={blend}",
        f"data.tokenizer_model={tokenizer}",
        f"data.cache_dir={root / 'cache'}",
    ]


def trainer_command(*overrides: str, nproc: int = 2) -> list[str]:
    """`torchrun --nproc-per-node N -m megatron_agentic.train --config <tiny recipe> ...`."""
    from megatron_agentic.local_ranks import free_port

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-port",
        str(free_port()),
        "-m",
        "megatron_agentic.train",
        "--config",
        str(REPO / RECIPE),
        *overrides,
    ]


def trainer_env(**extra: str) -> dict:
    """The environment for a trainer subprocess: this checkout importable, one thread per rank."""
    repo = str(REPO)
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def run_trainer(*overrides: str, env: dict | None = None, timeout: float = 300):
    """Run the trainer's command line on 2 ranks; the CompletedProcess (stdout+stderr in .stdout)."""
    return subprocess.run(
        trainer_command(*overrides),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env=trainer_env(**(env or {})),
    )


def read_wandb_offline_run(wandb_dir: Path) -> tuple[dict, list[dict]]:
    """(config, history rows) of the one offline W&B run under `wandb_dir` (WANDB_DIR).

    wandb 0.31 writes an offline run only as its transaction log `run-<id>.wandb` and no longer
    ships a reader: the log is LevelDB's log format (32 KiB blocks of chunks with a 7-byte
    header: crc32, length, type full/first/middle/last) after a 7-byte ":W&B" file header, and
    each record is a `wandb_internal_pb2.Record` protobuf."""
    import json

    from wandb.proto import wandb_internal_pb2

    (path,) = Path(wandb_dir).glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    config: dict = {}
    history: list[dict] = []
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):  # block trailer / zero padding
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind not in (1, 4):  # first/middle chunk: the record continues
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        pending = b""
        which = record.WhichOneof("record_type")
        if which == "run":
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif which == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif which == "history":
            history.append(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in record.history.item
                }
            )
    return config, history


def train_in_process(argv: list[str], recipe: str = RECIPE) -> list[float]:
    """On each rank of `run_distributed`: train `recipe` (the tiny one by default) with `argv`
    overrides and return this rank's per-step losses."""
    import torch

    from megatron_agentic.config import load_config
    from megatron_agentic.train import train

    try:
        return train(load_config(REPO / recipe, argv))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def train_losses(data, tmp: Path, *overrides: str, recipe: str = RECIPE) -> list[float]:
    """Rank 0's per-step losses of one 2-rank run (every rank computes the same figures)."""
    argv = [*data, f"checkpoint.save={tmp}", "training.eval_interval=0", *overrides]
    results = run_distributed(train_in_process, 2, argv, recipe, timeout=300)
    assert results[0] == pytest.approx(results[1], rel=1e-6)
    return results[0]
