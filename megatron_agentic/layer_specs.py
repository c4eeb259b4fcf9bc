"""Layer specs for the Qwen3-MoE decoder: TransformerEngine's on a GPU, megatron-core's local spec elsewhere.

The local spec is megatron-core's own (`get_gpt_decoder_block_spec(use_transformer_engine=False)`)
with two substitutions: its torch norm refuses sequence parallelism, which megatron-core requires
for MoE with TP > 1. `RMSNorm` below accepts it and tags its weight `sequence_parallel`, so that
megatron-core's `finalize_model_grads` all-reduces its gradients across the TP group as it does
for TE's norms. And its checkpoint keys are TransformerEngine's (`_te_keys_map`): an MoE layer's
pre-MLP norm is saved as `pre_mlp_layernorm.weight` (TE keeps it as its own module), not folded
into `mlp.linear_fc1.layer_norm_weight`, so checkpoints move between CPU and GPU runs unchanged.

With context parallelism (CP > 1) the local spec also swaps megatron-core's `DotProductAttention`
(which refuses CP) for `megatron_agentic.cp_attention.ContextParallelAttention`; TE's attention
does CP itself on GPUs.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util

import torch
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.moe.moe_layer import MoELayer
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules


class RMSNorm(torch.nn.Module):
    """RMSNorm computed in float32 and cast back, as Qwen3's reference implementation does."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6, **_):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, dtype=config.params_dtype))
        self.weight.sequence_parallel = config.sequence_parallel

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden.dtype
        hidden = hidden.to(torch.float32)
        hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * hidden.to(input_dtype)


def transformer_engine_available() -> bool:
    """TransformerEngine's PyTorch extension is importable and a GPU is present."""
    return torch.cuda.is_available() and importlib.util.find_spec("transformer_engine") is not None


def decoder_block_spec(
    config: TransformerConfig, use_transformer_engine: bool, vp_stage: int | None = None
) -> TransformerBlockSubmodules:
    """The decoder layers this pipeline stage (and virtual stage) builds."""
    block = get_gpt_decoder_block_spec(
        config,
        use_transformer_engine=use_transformer_engine,
        normalization="RMSNorm",
        vp_stage=vp_stage,
    )
    if use_transformer_engine:
        return block
    layer_specs = [_with_rmsnorm(spec) for spec in block.layer_specs]
    if config.context_parallel_size > 1:
        layer_specs = [_with_cp_attention(spec) for spec in layer_specs]
    return dataclasses.replace(block, layer_specs=layer_specs, layer_norm=RMSNorm)


def _with_cp_attention(layer_spec):
    """The layer with `ContextParallelAttention` as its core attention (local spec, CP > 1)."""
    from megatron_agentic.cp_attention import ContextParallelAttention

    sub = layer_spec.submodules
    attention = sub.self_attention
    attention_sub = dataclasses.replace(
        attention.submodules, core_attention=ContextParallelAttention
    )
    sub = dataclasses.replace(
        sub, self_attention=dataclasses.replace(attention, submodules=attention_sub)
    )
    return dataclasses.replace(layer_spec, submodules=sub)


def _with_rmsnorm(layer_spec):
    sub = layer_spec.submodules
    attention = sub.self_attention
    attention_sub = dataclasses.replace(
        attention.submodules, q_layernorm=RMSNorm, k_layernorm=RMSNorm
    )
    sub = dataclasses.replace(
        sub,
        input_layernorm=RMSNorm,
        pre_mlp_layernorm=RMSNorm,
        self_attention=dataclasses.replace(attention, submodules=attention_sub),
        sharded_state_dict_keys_map=_te_keys_map(sub),
    )
    return dataclasses.replace(layer_spec, submodules=sub)


def _te_keys_map(sub) -> dict[str, str]:
    """The local spec's key map, minus the pre-MLP norm's entry in an MoE layer: TE's MoE layer
    saves it under its own name (megatron-core gpt_layer_specs.py, TE branch:
    `pre_mlp_layernorm=backend.layer_norm(...) if num_experts`). A dense layer keeps the entry:
    TE fuses that norm into linear_fc1, whose key the map produces."""
    keys_map = dict(sub.sharded_state_dict_keys_map)
    mlp = sub.mlp
    if isinstance(mlp, functools.partial) and mlp.func is MoELayer:
        keys_map.pop("pre_mlp_layernorm.", None)
    return keys_map
