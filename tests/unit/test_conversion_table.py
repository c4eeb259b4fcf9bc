"""Unit tests (single process, seconds) of the conversion tables: each transform's inverse, the
computed HF -> Megatron index, and the config.json mapping of both Qwen3 families."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from megatron_agentic.conversion import family_for_hf, family_for_model, qwen3, qwen3_moe
from megatron_agentic.conversion.table import GATE_UP, QKV, ConversionError
from megatron_agentic.model import get_preset


@pytest.mark.parametrize("transform", [QKV, GATE_UP], ids=lambda t: t.name)
def test_each_transform_is_inverted_by_its_split(transform):
    model = get_preset("tiny")
    fused = torch.randn(
        (model.num_attention_heads + 2 * model.num_query_groups) * model.head_dim
        if transform is QKV
        else 2 * model.moe_ffn_hidden_size,
        model.hidden_size,
    )
    parts = transform.split(fused, model)
    assert len(parts) == (3 if transform is QKV else 2)
    assert torch.equal(transform.merge(parts, model), fused)


def test_qkv_interleave_puts_each_groups_keys_after_its_queries():
    model = get_preset("tiny")  # 4 heads, 2 groups, head_dim 16
    d, h = model.head_dim, model.hidden_size
    q = torch.full((4 * d, h), 0.0)
    k, v = torch.full((2 * d, h), 1.0), torch.full((2 * d, h), 2.0)
    q[2 * d :] = 3.0  # the second group's two query heads
    rows = QKV.merge([q, k, v], model)[:, 0].tolist()
    group = [0.0] * (2 * d) + [1.0] * d + [2.0] * d
    assert rows == group + [3.0] * (2 * d) + [1.0] * d + [2.0] * d


@pytest.mark.parametrize("family", [qwen3_moe, qwen3], ids=lambda f: f.MODEL_TYPE)
def test_inverse_index_finds_every_rule(family):
    for rule in family.TABLE.rules.values():
        layer = 3 if rule.prepended_axes >= 1 else None
        expert = 5 if rule.prepended_axes == 2 else None
        for name in rule.hf_names(layer, expert):
            assert family.TABLE.megatron_for(name) == (rule.megatron, layer, expert)
    assert family.TABLE.megatron_for("model.layers.0.mlp.shared_expert.weight") is None


def test_unknown_megatron_key_is_named():
    with pytest.raises(ConversionError, match="no HF name for Megatron tensor decoder.layers.x"):
        qwen3_moe.TABLE["decoder.layers.x"]


def _hf_config(**extra):
    config = {
        "model_type": "qwen3_moe",
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "vocab_size": 512,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
    }
    return {**config, **extra}


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_parameters": {"rope_type": "yarn", "rope_theta": 5e5, "factor": 4.0,
                             "original_max_position_embeddings": 1024}},
        {"rope_theta": 5e5, "rope_scaling": {"type": "yarn", "factor": 4.0,
                                             "original_max_position_embeddings": 1024}},
        {"rope_theta": 5e5, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                             "original_max_position_embeddings": 1024}},
    ],
    ids=["transformers5", "transformers4_type", "transformers4_rope_type"],
)  # fmt: skip
def test_yarn_is_read_in_every_spelling(rope):
    model = qwen3_moe.model_config_from_hf(_hf_config(**rope))
    assert model.rotary_base == 5e5
    assert model.rope_scaling is not None and model.rope_scaling.factor == 4.0
    assert model.rope_scaling.original_max_position_embeddings == 1024


def test_unsupported_rope_type_is_refused():
    with pytest.raises(ConversionError, match="rope type 'linear' is not supported"):
        qwen3_moe.model_config_from_hf(_hf_config(rope_scaling={"type": "linear", "factor": 2}))


@pytest.mark.parametrize("family", [qwen3_moe, qwen3], ids=lambda f: f.MODEL_TYPE)
def test_config_round_trips_with_both_rope_spellings(family):
    model = get_preset("tiny_128k", num_experts=0 if family is qwen3 else 4)
    assert family_for_model(model) is family
    hf = family.hf_config_from_model(model, "float32")
    assert family_for_hf(hf) is family
    assert hf["rope_theta"] == model.rotary_base  # transformers 4.x reads these two
    assert hf["rope_scaling"]["type"] == "yarn" and hf["rope_scaling"]["factor"] == 4.0
    assert hf["rope_parameters"]["rope_type"] == "yarn"
    back = family.model_config_from_hf(hf)
    if family is qwen3:  # the MoE fields mean nothing for a dense model
        moe_fields = ("moe_router_topk", "moe_ffn_hidden_size", "norm_topk_prob")
        back = dataclasses.replace(back, **{f: getattr(model, f) for f in moe_fields})
    assert back == model


def test_unknown_model_type_is_named():
    with pytest.raises(ConversionError, match="model_type 'llama' is not supported"):
        family_for_hf({"model_type": "llama"}, "x/config.json")
