"""Dense Qwen3 (Qwen3ForCausalLM) <-> megatron-core GPTModel with a plain SwiGLU MLP.

The name table below is the whole mapping (both directions). The attention, norm and embedding
rules and the config fields are shared with Qwen3-MoE (`qwen3_moe` reuses them); the dense MLP
keeps its pre-MLP norm fused into linear_fc1 (`mlp.linear_fc1.layer_norm_weight`), the key
TransformerEngine's dense layer uses.
"""

from __future__ import annotations

from megatron_agentic.conversion.table import GATE_UP, QKV, ConversionError, NameTable, rule
from megatron_agentic.model import Qwen3MoEConfig, RopeScaling

MODEL_TYPE = "qwen3"
ARCHITECTURE = "Qwen3ForCausalLM"
L = "model.layers.{layer}."

SHARED_RULES = [
    rule("embedding.word_embeddings.weight", "model.embed_tokens.weight"),
    rule("output_layer.weight", "lm_head.weight"),
    rule("decoder.final_layernorm.weight", "model.norm.weight"),
    rule(
        "decoder.layers.self_attention.linear_qkv.layer_norm_weight", L + "input_layernorm.weight"
    ),
    rule(
        "decoder.layers.self_attention.linear_qkv.weight",
        L + "self_attn.q_proj.weight",
        L + "self_attn.k_proj.weight",
        L + "self_attn.v_proj.weight",
        transform=QKV,
    ),
    rule("decoder.layers.self_attention.linear_proj.weight", L + "self_attn.o_proj.weight"),
    rule("decoder.layers.self_attention.q_layernorm.weight", L + "self_attn.q_norm.weight"),
    rule("decoder.layers.self_attention.k_layernorm.weight", L + "self_attn.k_norm.weight"),
]

TABLE = NameTable(
    MODEL_TYPE,
    SHARED_RULES
    + [
        rule(
            "decoder.layers.mlp.linear_fc1.layer_norm_weight", L + "post_attention_layernorm.weight"
        ),
        rule(
            "decoder.layers.mlp.linear_fc1.weight",
            L + "mlp.gate_proj.weight",
            L + "mlp.up_proj.weight",
            transform=GATE_UP,
        ),
        rule("decoder.layers.mlp.linear_fc2.weight", L + "mlp.down_proj.weight"),
    ],
)


def handles(model: Qwen3MoEConfig) -> bool:
    return not model.num_experts


def rope_from_hf(config: dict, source: str) -> tuple[float, RopeScaling | None]:
    """(rope theta, YaRN scaling or None) from transformers 5's `rope_parameters` or 4's
    top-level `rope_theta` + `rope_scaling` (whose type is spelled `rope_type` or `type`)."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    kind = rope.get("rope_type", rope.get("type")) or "default"
    if kind == "default":
        return float(theta), None
    if kind != "yarn":
        raise ConversionError(f"{source}: rope type {kind!r} is not supported (default or yarn)")
    try:
        scaling = RopeScaling(
            factor=float(rope["factor"]),
            original_max_position_embeddings=int(rope["original_max_position_embeddings"]),
            beta_fast=float(rope.get("beta_fast", 32.0)),
            beta_slow=float(rope.get("beta_slow", 1.0)),
        )
    except KeyError as error:
        raise ConversionError(f"{source}: yarn rope settings lack {error.args[0]!r}") from None
    return float(theta), scaling


def rope_to_hf(model: Qwen3MoEConfig) -> dict:
    """RoPE settings in both spellings: transformers 5 reads `rope_parameters`, 4.x reads the
    top-level `rope_theta` and `rope_scaling` (without them 4.57 falls back to theta 10000)."""
    scaling = None
    if model.rope_scaling is not None:
        scaling = {
            "rope_type": "yarn",
            "type": "yarn",
            "factor": model.rope_scaling.factor,
            "original_max_position_embeddings": model.rope_scaling.original_max_position_embeddings,
            "beta_fast": model.rope_scaling.beta_fast,
            "beta_slow": model.rope_scaling.beta_slow,
        }
    parameters = {"rope_theta": model.rotary_base, **(scaling or {"rope_type": "default"})}
    parameters.pop("type", None)
    return {"rope_parameters": parameters, "rope_theta": model.rotary_base, "rope_scaling": scaling}


def shared_fields_from_hf(config: dict, source: str) -> dict:
    """The Qwen3MoEConfig fields every Qwen3 family shares, from a config.json."""
    theta, scaling = rope_from_hf(config, source)
    try:
        return dict(
            num_layers=config["num_hidden_layers"],
            hidden_size=config["hidden_size"],
            num_attention_heads=config["num_attention_heads"],
            num_query_groups=config["num_key_value_heads"],
            head_dim=config.get("head_dim")
            or config["hidden_size"] // config["num_attention_heads"],
            ffn_hidden_size=config["intermediate_size"],
            vocab_size=config["vocab_size"],
            max_position_embeddings=config["max_position_embeddings"],
            rotary_base=theta,
            rope_scaling=scaling,
            norm_epsilon=config["rms_norm_eps"],
            untie_embeddings_and_output_weights=not config.get("tie_word_embeddings", False),
        )
    except KeyError as error:
        raise ConversionError(f"{source}: missing key {error.args[0]!r}") from None


def shared_fields_to_hf(model: Qwen3MoEConfig, dtype: str) -> dict:
    return {
        "num_hidden_layers": model.num_layers,
        "hidden_size": model.hidden_size,
        "num_attention_heads": model.num_attention_heads,
        "num_key_value_heads": model.num_query_groups,
        "head_dim": model.head_dim,
        "intermediate_size": model.ffn_hidden_size,
        "vocab_size": model.vocab_size,
        "max_position_embeddings": model.max_position_embeddings,
        **rope_to_hf(model),
        "rms_norm_eps": model.norm_epsilon,
        "tie_word_embeddings": not model.untie_embeddings_and_output_weights,
        "hidden_act": "silu",
        "attention_bias": False,
        "initializer_range": model.init_method_std,
        "dtype": dtype,
    }


def model_config_from_hf(config: dict, source: str = "config.json") -> Qwen3MoEConfig:
    if config.get("use_sliding_window"):
        raise ConversionError(f"{source}: sliding-window attention is not supported")
    return Qwen3MoEConfig(**shared_fields_from_hf(config, source), num_experts=0)


def hf_config_from_model(model: Qwen3MoEConfig, dtype: str) -> dict:
    return {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        **shared_fields_to_hf(model, dtype),
        "use_sliding_window": False,
    }
