"""Core attention with context parallelism for the local (non-TransformerEngine) layer spec.

megatron-core's own local `DotProductAttention` refuses context parallelism (CP); only
TransformerEngine's attention implements it, and TE needs a GPU. This module lets the CPU runtime
(and any cluster without TE) run CP > 1 with the same numerics, so that CP layouts, their
checkpoints and their data slicing are tested where no GPU is lent.

How it computes: with CP, megatron-core's `get_batch_on_this_cp_rank` gives CP rank r the
load-balanced chunks r and 2*CP-1-r of every sequence (2*CP chunks in all), and GPTModel's
rotary embedding already rotates those tokens by their global positions. The queries stay local;
keys and values are all-gathered over the CP group (an autograd-aware all-gather whose backward is a
reduce-scatter, megatron-core's `gather_from_sequence_parallel_region`, so the gradients of K/V
flow back to the ranks that own those tokens), put back into sequence order, and attended with the
global causal mask of the local queries' positions - intersected with an explicit attention mask
(document masking) if the batch carries one. The attention itself is torch's
`scaled_dot_product_attention` in the input dtype (float32 on CPU).

This is an all-gather design (every rank holds the whole sequence's K/V for one layer at a time),
not TE's ring exchange: it is meant for correctness on CPU and small clusters, not for 128K on
GPUs, where `layer_specs.decoder_block_spec` keeps TE's attention. The spec installs this class
only where TE is absent and CP > 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.tensor_parallel.mappings import gather_from_sequence_parallel_region
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.utils import divide


def cp_chunk_order(cp_size: int) -> list[int]:
    """The global chunk index of each chunk after an all-gather over the CP group: rank r holds
    chunks (r, 2*CP-1-r), in that order (megatron-core's load-balanced split)."""
    return [chunk for rank in range(cp_size) for chunk in (rank, 2 * cp_size - 1 - rank)]


def local_positions(seq_local: int, cp_size: int, cp_rank: int, device=None) -> torch.Tensor:
    """Global positions of the `seq_local` tokens CP rank `cp_rank` holds."""
    half = seq_local // 2
    starts = (cp_rank * half, (2 * cp_size - 1 - cp_rank) * half)
    return torch.cat([torch.arange(start, start + half, device=device) for start in starts])


def gather_sequence(tensor: torch.Tensor, group) -> torch.Tensor:
    """All-gather the local [s_local, ...] tensor over the CP group into the global sequence order.
    Backward: reduce-scatter, then the inverse reordering (autograd handles both)."""
    cp_size = group.size()
    gathered = gather_from_sequence_parallel_region(
        tensor, tensor_parallel_output_grad=True, group=group
    )
    chunks = gathered.chunk(2 * cp_size, dim=0)
    order = cp_chunk_order(cp_size)
    by_position = [None] * len(order)
    for gathered_index, chunk_index in enumerate(order):
        by_position[chunk_index] = chunks[gathered_index]
    return torch.cat(by_position, dim=0)


class ContextParallelAttention(MegatronModule):
    """Drop-in `core_attention` for megatron-core's SelfAttention: CP over any torch.distributed
    backend (gloo included), GQA, causal or explicitly masked; no parameters (no checkpoint keys).

    Takes query [sq, b, np, hn] and key/value [sq, b, ng, hn] of this CP rank's tokens, returns the
    context [sq, b, np*hn], as `DotProductAttention` does.
    """

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection=None,
    ):
        super().__init__(config=config)
        if config.softmax_type != "vanilla":
            raise ValueError(
                f"ContextParallelAttention: softmax_type={config.softmax_type!r} is not supported "
                "(vanilla only)"
            )
        tp_group = (
            getattr(pg_collection, "tp", None) or parallel_state.get_tensor_model_parallel_group()
        )
        self.cp_group = (
            getattr(pg_collection, "cp", None) or parallel_state.get_context_parallel_group()
        )
        self.attn_mask_type = attn_mask_type
        tp = tp_group.size()
        self.heads = divide(config.num_attention_heads, tp)
        self.query_groups = divide(config.num_query_groups, tp)
        self.softmax_scale = (
            softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(config.kv_channels)
        )
        # (apply_query_key_layer_scaling divides the scores by the layer number and multiplies
        # them back inside the fp32 softmax: the same probabilities, so it is not modelled here.)
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type=None,
        attention_bias=None,
        packed_seq_params=None,
    ) -> torch.Tensor:
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError(
                "ContextParallelAttention: packed sequences (THD) and attention bias need "
                "TransformerEngine; on CPU pass document masking as an explicit attention_mask"
            )
        cp_size = self.cp_group.size()
        seq_local = query.size(0)
        if cp_size > 1:
            key = gather_sequence(key, self.cp_group)
            value = gather_sequence(value, self.cp_group)
            q_pos = local_positions(seq_local, cp_size, self.cp_group.rank(), query.device)
        else:
            q_pos = torch.arange(seq_local, device=query.device)
        k_pos = torch.arange(key.size(0), device=query.device)
        allowed = k_pos[None, :] <= q_pos[:, None]  # [sq, sk] global causal mask
        if attention_mask is not None:  # megatron's convention: True = masked out
            allowed = allowed & ~attention_mask.bool()  # [b or 1, 1, sq, sk]
        # [s, b, heads, d] -> [b, heads, s, d]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        context = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.softmax_scale,
            enable_gqa=self.heads != self.query_groups,
        )
        # [b, np, sq, hn] -> [sq, b, np*hn]
        return context.permute(2, 0, 1, 3).reshape(seq_local, query.size(1), -1)
