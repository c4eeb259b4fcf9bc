"""Qwen3-MoE (Qwen3MoeForCausalLM) <-> megatron-core GPTModel with routed experts.

Qwen3's attention, norm and embedding rules plus the MoE block below are the whole mapping (both
directions). The pre-MLP norm is its own module in an MoE layer (`pre_mlp_layernorm.weight`,
TransformerEngine's key, which our local spec emits too).
"""

from __future__ import annotations

from megatron_agentic.conversion import qwen3
from megatron_agentic.conversion.table import GATE_UP, ConversionError, NameTable, rule
from megatron_agentic.model import Qwen3MoEConfig

MODEL_TYPE = "qwen3_moe"
ARCHITECTURE = "Qwen3MoeForCausalLM"
L, E = qwen3.L, qwen3.L + "mlp.experts.{expert}."

TABLE = NameTable(
    MODEL_TYPE,
    qwen3.SHARED_RULES
    + [
        rule("decoder.layers.pre_mlp_layernorm.weight", L + "post_attention_layernorm.weight"),
        rule("decoder.layers.mlp.router.weight", L + "mlp.gate.weight"),
        rule(
            "decoder.layers.mlp.experts.experts.linear_fc1.weight",
            E + "gate_proj.weight",
            E + "up_proj.weight",
            transform=GATE_UP,
        ),
        rule("decoder.layers.mlp.experts.experts.linear_fc2.weight", E + "down_proj.weight"),
    ],
)


def handles(model: Qwen3MoEConfig) -> bool:
    return bool(model.num_experts)


def model_config_from_hf(config: dict, source: str = "config.json") -> Qwen3MoEConfig:
    if config.get("decoder_sparse_step", 1) != 1 or config.get("mlp_only_layers"):
        raise ConversionError(
            f"{source}: dense layers (mlp_only_layers/decoder_sparse_step) "
            "are not supported: every Qwen3-MoE layer must be MoE"
        )
    try:
        return Qwen3MoEConfig(
            **qwen3.shared_fields_from_hf(config, source),
            num_experts=config.get("num_experts", config.get("num_local_experts")),
            moe_router_topk=config["num_experts_per_tok"],
            moe_ffn_hidden_size=config["moe_intermediate_size"],
            norm_topk_prob=config.get("norm_topk_prob", False),
            moe_aux_loss_coeff=config.get("router_aux_loss_coef", 1e-3),
        )
    except KeyError as error:
        raise ConversionError(f"{source}: missing key {error.args[0]!r}") from None


def hf_config_from_model(model: Qwen3MoEConfig, dtype: str) -> dict:
    return {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        **qwen3.shared_fields_to_hf(model, dtype),
        "num_experts": model.num_experts,
        "num_experts_per_tok": model.moe_router_topk,
        "moe_intermediate_size": model.moe_ffn_hidden_size,
        "norm_topk_prob": model.norm_topk_prob,
        "router_aux_loss_coef": model.moe_aux_loss_coeff,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
    }
