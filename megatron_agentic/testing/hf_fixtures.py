"""Tiny random Qwen3MoeForCausalLM / Qwen3ForCausalLM models saved like the hub's checkpoints
(sharded safetensors + index + tokenizer), built locally with transformers: no download."""

from __future__ import annotations

from pathlib import Path

import torch

from megatron_agentic.testing.data_fixtures import make_tokenizer

TINY = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    num_experts=4,
    num_experts_per_tok=2,
    moe_intermediate_size=32,
    max_position_embeddings=1024,
    norm_topk_prob=True,
    rms_norm_eps=1e-6,
    rope_theta=1_000_000.0,
)


MOE_ONLY = ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob")


def make_tiny_hf_model(
    directory: Path, seed: int = 0, dense: bool = False, rope: dict | None = None, **overrides
) -> Path:
    """Save a random tiny Qwen3-MoE (or, with `dense`, Qwen3) in float32 with a locally trained
    tokenizer to `directory`. `rope`: rope_parameters other than the theta (default: plain)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    settings = {**TINY, **overrides}
    if dense:
        settings = {k: v for k, v in settings.items() if k not in MOE_ONLY}
    rope_theta = settings.pop("rope_theta")
    config_class, model_class = (
        (Qwen3Config, Qwen3ForCausalLM) if dense else (Qwen3MoeConfig, Qwen3MoeForCausalLM)
    )
    config = config_class(
        **settings,
        rope_parameters={"rope_theta": rope_theta, **(rope or {"rope_type": "default"})},
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = model_class(config)
    with torch.no_grad():  # norms at 1.0 would hide a swapped norm; make them distinct
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    model.save_pretrained(directory, max_shard_size="200KB")
    make_tokenizer(directory, vocab_size=min(400, config.vocab_size))
    return Path(directory)
