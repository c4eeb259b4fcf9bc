"""Integration tests (multi-rank conversions) of HF <-> Megatron for Qwen3-MoE and dense Qwen3:
logits parity, bit-exact round trip, bad input named, layout/config checked before any rank
starts, exports that never delete what they did not write."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import torch

from megatron_agentic.testing.conversion import convert, hf_logits, megatron_logits
from megatron_agentic.testing.distributed import run_distributed
from megatron_agentic.testing.hf_fixtures import make_tiny_hf_model


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """family -> a tiny random HF model of it (built once per module)."""
    cache = {}

    def get(family: str) -> Path:
        if family not in cache:
            directory = tmp_path_factory.mktemp(family) / "tiny"
            cache[family] = make_tiny_hf_model(directory, dense=family == "qwen3")
        return cache[family]

    return get


@pytest.fixture(scope="module")
def hf_model(hf_models):
    return hf_models("qwen3_moe")


@pytest.fixture(scope="module")
def imported(hf_models, tmp_path_factory):
    """(family, layout) -> its HF model imported to a Megatron checkpoint (once per module: the
    logits, round-trip and export tests read the same imports and never change them)."""
    cache = {}

    def get(family: str, layout: dict) -> Path:
        key = (family, tuple(sorted(layout.items())))
        if key not in cache:
            ckpt = tmp_path_factory.mktemp("imported") / "ckpt"
            flags = [f"--{k}={v}" for k, v in layout.items()]
            assert (
                convert("hf-to-megatron", "--hf-model", hf_models(family), "--output", ckpt, *flags)
                == 0
            )
            cache[key] = ckpt
        return cache[key]

    return get


IMPORTS = {  # name -> (family, layout, ranks)
    "moe_tp1": ("qwen3_moe", {}, 1),
    "moe_tp2_ep2": ("qwen3_moe", {"tp": 2, "ep": 2}, 2),
    "dense_tp2": ("qwen3", {"tp": 2}, 2),
}


@pytest.mark.parametrize("name", list(IMPORTS))
def test_imported_logits_match_transformers(hf_models, imported, name):
    family, layout, ranks = IMPORTS[name]
    expected = hf_logits(hf_models(family))
    for logits in run_distributed(megatron_logits, ranks, str(imported(family, layout)), layout):
        logits = torch.tensor(logits)
        assert logits.shape == expected.shape
        assert (logits - expected).abs().max().item() < 1e-4


def _tensors(directory):
    from safetensors.torch import load_file

    out = {}
    for file in Path(directory).glob("*.safetensors"):
        out.update(load_file(file))
    return out


@pytest.mark.parametrize("name", ["moe_tp2_ep2", "dense_tp2"])
def test_round_trip_is_bit_exact_and_loads_in_transformers(
    hf_models, imported, tmp_path, capfd, name
):
    family, layout, _ = IMPORTS[name]
    hf_model, back = hf_models(family), tmp_path / "back"
    assert convert("megatron-to-hf", "--input", imported(family, layout), "--output", back) == 0
    assert re.search(r"\[export\] 3/3 layer 1 - [\d.]+ s, ETA 0.0 s", capfd.readouterr().out)

    original, exported = _tensors(hf_model), _tensors(back)
    assert set(original) == set(exported)
    for name, tensor in original.items():
        assert exported[name].dtype == tensor.dtype and torch.equal(exported[name], tensor), name
    index = json.loads((back / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(exported)
    assert torch.equal(hf_logits(back), hf_logits(hf_model))
    assert (back / "tokenizer.json").is_file()
    # the base model's generation settings and token ids, not ours
    base_config = json.loads((hf_model / "config.json").read_text())
    config = json.loads((back / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    assert config["eos_token_id"] == base_config["eos_token_id"]
    assert json.loads((back / "generation_config.json").read_text()) == json.loads(
        (hf_model / "generation_config.json").read_text()
    )
    assert config["rope_theta"] == base_config["rope_parameters"]["rope_theta"]
    umask = os.umask(0)
    os.umask(umask)
    for file in back.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~umask, file


def test_export_never_deletes_what_it_did_not_write(imported, tmp_path, capsys):
    ckpt, out = imported("qwen3_moe", {}), tmp_path / "out"
    release = ckpt / "release"
    for output in (ckpt, release, ckpt.parent):  # the input itself, or a folder holding it
        assert convert("megatron-to-hf", "--input", ckpt, "--output", output) == 1
        assert "holds the input checkpoint" in capsys.readouterr().err
    assert (ckpt / "latest_checkpointed_iteration.txt").is_file()

    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert convert("megatron-to-hf", "--input", ckpt, "--output", out) == 1
    assert "not an earlier export" in capsys.readouterr().err
    assert os.listdir(out) == ["notes.txt"]

    assert convert("megatron-to-hf", "--input", ckpt, "--output", out, "--overwrite") == 0
    first = set(os.listdir(out))
    assert "notes.txt" in first and "model-00001-of-00001.safetensors" in first
    # an earlier export of ours: re-exported in place; its old shard goes, the user's file stays
    args = ["--input", ckpt, "--output", out, "--max-shard-size-gb", "0.0001"]
    assert convert("megatron-to-hf", *args) == 0
    second = set(os.listdir(out))
    assert "notes.txt" in second and "model-00001-of-00001.safetensors" not in second
    shards = [n for n in second if n.endswith(".safetensors")]
    assert len(shards) > 1 and all(n.endswith(f"-of-{len(shards):05d}.safetensors") for n in shards)
    assert not list(tmp_path.glob(".*.partial"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tp", "0"], "tp=0 must be >= 1"),
        (["--ep", "3"], "num_experts=4 is not divisible by ep=3"),
        (["--tp", "4"], "num_query_groups=2 is not divisible by tp=4"),
    ],
    ids=["tp0", "ep3", "tp4_2kv"],
)
def test_impossible_layout_is_refused_before_any_rank(hf_model, tmp_path, capsys, flags, message):
    assert convert("hf-to-megatron", "--hf-model", hf_model, "--output", tmp_path, *flags) == 1
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


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


def test_an_import_prints_no_async_save_notice(hf_model, tmp_path, capfd):
    """megatron-core logs "async save is deprecated" for every synchronous save (seen on the
    H200's import); the trainer's saves already dropped that record, the import now does too."""
    assert convert("hf-to-megatron", "--hf-model", hf_model, "--output", tmp_path / "ckpt") == 0
    out, err = capfd.readouterr()
    assert "imported" in out + err
    assert "async save is deprecated" not in out + err
