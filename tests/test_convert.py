"""HF <-> Megatron conversion of Qwen3-MoE: logits parity, bit-exact round trip, bad input named."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from tests.distributed import run_distributed
from tests.hf_fixtures import make_tiny_hf_model

TOKENS = torch.tensor([[5, 17, 99, 3, 250, 42, 7, 311, 64, 128, 9, 77, 201, 33, 8, 2]])


def convert(*args: str) -> int:
    from tools.convert_checkpoint import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    return make_tiny_hf_model(tmp_path_factory.mktemp("hf") / "tiny")


def hf_logits(directory: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(TOKENS).logits


def _megatron_logits(checkpoint: str, layout: dict) -> torch.Tensor:
    import yaml
    from megatron.core import tensor_parallel

    from megatron_agentic import checkpointing, parallel
    from megatron_agentic.hf_conversion import resolve_checkpoint
    from megatron_agentic.model import Qwen3MoEConfig, build_model, transformer_config

    model_cfg = Qwen3MoEConfig(
        **yaml.safe_load((resolve_checkpoint(checkpoint) / checkpointing.MODEL_CONFIG).read_text())
    )
    par = parallel.ParallelConfig(**layout)
    parallel.initialize(par)
    chunks = build_model(model_cfg, transformer_config(model_cfg, par), TOKENS.shape[1])
    checkpointing.load_checkpoint(checkpoint, chunks, None, None, load_optimizer=False)
    model = chunks[0].eval()
    with torch.no_grad():
        positions = torch.arange(TOKENS.shape[1]).unsqueeze(0)
        logits = model(TOKENS, positions, None)
        logits = tensor_parallel.gather_from_tensor_model_parallel_region(logits)
    parallel.destroy()
    return logits


@pytest.mark.parametrize(
    "layout, ranks", [({}, 1), ({"tp": 2, "ep": 2}, 2)], ids=["tp1", "tp2_ep2"]
)
def test_imported_logits_match_transformers(hf_model, tmp_path, layout, ranks):
    flags = [f"--{k}={v}" for k, v in layout.items()]
    assert (
        convert("hf-to-megatron", "--hf-model", hf_model, "--output", tmp_path / "ckpt", *flags)
        == 0
    )
    expected = hf_logits(hf_model)
    for logits in run_distributed(_megatron_logits, ranks, str(tmp_path / "ckpt"), layout):
        assert logits.shape == expected.shape
        assert (logits - expected).abs().max().item() < 1e-4


def test_round_trip_is_bit_exact_and_loads_in_transformers(hf_model, tmp_path):
    from safetensors.torch import load_file

    assert (
        convert(
            "hf-to-megatron",
            "--hf-model",
            hf_model,
            "--output",
            tmp_path / "ckpt",
            "--tp",
            "2",
            "--ep",
            "2",
        )
        == 0
    )
    assert (
        convert("megatron-to-hf", "--input", tmp_path / "ckpt", "--output", tmp_path / "back") == 0
    )

    def tensors(directory):
        out = {}
        for file in Path(directory).glob("*.safetensors"):
            out.update(load_file(file))
        return out

    original, back = tensors(hf_model), tensors(tmp_path / "back")
    assert set(original) == set(back)
    for name, tensor in original.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name
    index = json.loads((tmp_path / "back" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(back)
    assert torch.equal(hf_logits(tmp_path / "back"), hf_logits(hf_model))
    assert (tmp_path / "back" / "tokenizer.json").is_file()


def test_wrong_expert_count_is_named(hf_model, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(hf_model, broken)
    config = json.loads((broken / "config.json").read_text())
    config["num_experts"] = 3
    (broken / "config.json").write_text(json.dumps(config))
    assert convert("hf-to-megatron", "--hf-model", broken, "--output", tmp_path / "out") == 1
    error = capsys.readouterr().err
    assert re.search(
        r"model\.layers\.\d\.mlp\.gate\.weight: shape \(4, 64\) does not match the "
        r"config \(expected \(3, 64\)\)",
        error,
    ), error
    assert not (tmp_path / "out" / "latest_checkpointed_iteration.txt").exists()


def test_missing_and_truncated_shards_are_named(hf_model, tmp_path, capsys):
    for damage in ("missing", "truncated"):
        broken = tmp_path / damage
        shutil.copytree(hf_model, broken)
        shard = sorted(broken.glob("model-*.safetensors"))[1]
        if damage == "missing":
            shard.unlink()
        else:
            shard.write_bytes(shard.read_bytes()[:100])
        assert convert("hf-to-megatron", "--hf-model", broken, "--output", tmp_path / "out") == 1
        assert shard.name in capsys.readouterr().err
        assert not (tmp_path / "out" / "latest_checkpointed_iteration.txt").exists()
