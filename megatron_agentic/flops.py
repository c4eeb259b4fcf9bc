"""Model FLOPs of Qwen3-MoE training, for TFLOP/s and MFU (shared by the trainer, planner, benchmark).

Counts matrix multiplies only (2 FLOPs per multiply-add), per token, forward pass:
- attention projections: QKV (query heads + 2 x query groups, head_dim each) and output;
- attention scores and values: 2 x (2 * seq * heads * head_dim), halved for the causal mask
  (only the lower triangle is computed by flash/fused attention);
- MoE: the router, and only the top-k active experts (three matrices each, SwiGLU);
- the LM head.
Training = 3 x forward (backward is twice the forward). Activation recompute adds work the GPU
does but the model does not need: it is excluded here, as in the usual MFU definition.
"""

from __future__ import annotations

from megatron_agentic.model import Qwen3MoEConfig


def forward_flops_per_token(model: Qwen3MoEConfig, seq_length: int) -> float:
    """Forward-pass FLOPs for one token of a `seq_length`-token causal sequence."""
    h, d = model.hidden_size, model.head_dim
    heads, groups = model.num_attention_heads, model.num_query_groups
    projections = 2 * h * d * (heads + 2 * groups) + 2 * heads * d * h
    scores_and_values = 2 * (2 * seq_length * heads * d) / 2  # causal: half the square
    router = 2 * h * model.num_experts
    experts = model.moe_router_topk * 3 * 2 * h * model.moe_ffn_hidden_size
    per_layer = projections + scores_and_values + router + experts
    lm_head = 2 * h * model.vocab_size
    return model.num_layers * per_layer + lm_head


def training_flops_per_token(model: Qwen3MoEConfig, seq_length: int) -> float:
    """Forward + backward model FLOPs per token (3x the forward)."""
    return 3 * forward_flops_per_token(model, seq_length)
