"""Parallel-layout planning: per-GPU memory and a relative step-time estimate for Qwen3-MoE.

Memory per GPU (bytes), for the most loaded pipeline stage:
- parameters: exact per-rank counts of megatron-core's GPTModel (tested against it), split into
  dense parameters (sharded by TP) and expert parameters (sharded by EP and ETP);
- bf16 weights (2 B) + fp32 gradient buffers (4 B) per parameter;
- distributed optimizer: fp32 master weights + two Adam moments (12 B) per parameter, sharded
  over the data-parallel group of each kind (dense: world/(TP*CP*PP); experts: world/(EP*ETP*PP));
- activations, per layer and micro-batch, for the s/(TP*CP) tokens of a rank (SP splits by TP):
  full recompute keeps each layer's input (2*s*h B); no recompute keeps ~34*s*h B per layer
  (Korthikanti et al. without the attention-score term, which flash attention does not store);
  the first stage holds PP micro-batches in flight (interleaving adds (PP-1)/VPP more);
- MoE dispatch: top-k copies of the rank's tokens, for the permuted input and the fc1 output
  (2*moe_ffn per token-expert), plus the working set of one recomputed layer;
- a fixed allowance for the CUDA context, NCCL buffers and fragmentation.
The step-time score is relative: model FLOPs per GPU (`flops.py`) divided by an efficiency that
loses for the pipeline bubble, TP/EP traffic crossing nodes, CP's ring exchanges and recompute.
It ranks layouts; it does not predict seconds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from megatron_agentic.flops import training_flops_per_token
from megatron_agentic.model import Qwen3MoEConfig

GB = 1024**3
FIXED_OVERHEAD_GB = 6.0  # CUDA context, NCCL, allocator fragmentation (rule of thumb)


@dataclass(frozen=True)
class Layout:
    tp: int = 1
    pp: int = 1
    vpp: int = 1
    cp: int = 1
    ep: int = 1
    etp: int = 1
    recompute: str = "full"  # full | none

    def __str__(self) -> str:
        return (
            f"TP={self.tp} PP={self.pp} VPP={self.vpp} CP={self.cp} EP={self.ep} "
            f"ETP={self.etp} recompute={self.recompute}"
        )


@dataclass
class Estimate:
    layout: Layout
    dense_params: int
    expert_params: int
    weights_and_grads_gb: float
    optimizer_gb: float
    activations_gb: float
    moe_buffers_gb: float
    total_gb: float
    relative_step_time: float
    data_parallel: int


def params_per_rank(
    m: Qwen3MoEConfig, layout: Layout, first_stage: bool, last_stage: bool
) -> tuple[int, int]:
    """(dense, expert) parameters held by one rank of the given stage, as megatron-core builds them."""
    h, d, tp = m.hidden_size, m.head_dim, layout.tp
    qkv = h * d * (m.num_attention_heads + 2 * m.num_query_groups) // tp
    proj = m.num_attention_heads * d * h // tp
    norms = 2 * h + (2 * d if m.qk_layernorm else 0)  # replicated on every TP rank
    router = m.num_experts * h
    dense_layer = qkv + proj + norms + router
    expert_layer = (m.num_experts // layout.ep) * 3 * h * m.moe_ffn_hidden_size // layout.etp
    layers = m.num_layers // layout.pp
    dense = layers * dense_layer
    vocab_shard = m.vocab_size * h // tp
    if first_stage:
        dense += vocab_shard
    if last_stage:
        dense += h + (
            vocab_shard if m.untie_embeddings_and_output_weights or not first_stage else 0
        )
    return dense, layers * expert_layer


def estimate(
    m: Qwen3MoEConfig,
    layout: Layout,
    seq_length: int,
    micro_batch: int,
    global_batch: int,
    world_size: int,
    gpus_per_node: int = 8,
) -> Estimate:
    """Memory of the first pipeline stage (the most loaded one) and a relative step time."""
    dense, expert = params_per_rank(m, layout, first_stage=True, last_stage=layout.pp == 1)
    dp_dense = world_size // (layout.tp * layout.cp * layout.pp)
    dp_expert = world_size // (layout.ep * layout.etp * layout.pp)
    weights_grads = 6 * (dense + expert)
    optimizer = 12 * (dense / dp_dense + expert / dp_expert)
    tokens = micro_batch * seq_length // (layout.tp * layout.cp)  # this rank's share of a sequence
    h = m.hidden_size
    layers = m.num_layers // layout.pp
    in_flight = layout.pp + ((layout.pp - 1) // layout.vpp if layout.vpp > 1 else 0)
    per_layer = 2 * tokens * h if layout.recompute == "full" else 34 * tokens * h
    working_layer = 34 * tokens * h  # the layer being (re)computed
    activations = per_layer * layers * min(in_flight, global_batch // micro_batch) + working_layer
    routed = tokens * layout.tp * m.moe_router_topk  # the dispatch undoes SP within TP
    moe = 2 * routed * (h + 2 * m.moe_ffn_hidden_size)
    total = (weights_grads + optimizer + activations + moe) / GB + FIXED_OVERHEAD_GB
    return Estimate(
        layout,
        dense,
        expert,
        weights_grads / GB,
        optimizer / GB,
        activations / GB,
        moe / GB,
        total,
        _relative_time(m, layout, seq_length, global_batch, micro_batch, world_size, gpus_per_node),
        dp_dense,
    )


def _relative_time(m, layout, seq_length, global_batch, micro_batch, world_size, gpus_per_node):
    flops = training_flops_per_token(m, seq_length) * seq_length * global_batch / world_size
    micro_batches = global_batch // (
        micro_batch * (world_size // (layout.tp * layout.cp * layout.pp))
    )
    bubble = (layout.pp - 1) / layout.vpp / max(micro_batches, 1)
    efficiency = 1.0 / (1.0 + bubble)
    if layout.tp * layout.cp > gpus_per_node or layout.tp > gpus_per_node:
        efficiency *= 0.5  # TP/CP traffic over the inter-node network
    efficiency *= 1.0 - 0.04 * (layout.tp - 1)  # SP all-gathers/reduce-scatters per layer
    efficiency *= 1.0 - 0.05 * (layout.cp - 1) / layout.cp  # ring exchange of K/V
    if layout.ep * layout.etp > gpus_per_node:
        efficiency *= 0.8  # all-to-all over the inter-node network
    if layout.recompute == "full":
        efficiency *= 3 / 4  # one more forward per step
    return flops / efficiency / 1e15


def candidate_layouts(m: Qwen3MoEConfig, world_size: int, seq_length: int) -> list[Layout]:
    """Layouts megatron-core accepts for the model and world size."""
    powers = [1, 2, 4, 8, 16]
    out = []
    for tp, pp, cp, ep, vpp, recompute in itertools.product(
        powers, powers, powers, powers, [1, 2], ["full", "none"]
    ):
        layout = Layout(tp=tp, pp=pp, vpp=vpp, cp=cp, ep=ep, etp=1, recompute=recompute)
        if (
            m.num_attention_heads % tp
            or m.num_query_groups % tp
            or m.num_experts % ep
            or m.num_layers % (pp * vpp)
            or (vpp > 1 and pp == 1)
            or world_size % (tp * cp * pp)
            or world_size % (ep * pp)
            or seq_length % (tp * cp * (2 if cp > 1 else 1))
        ):
            continue
        out.append(layout)
    return out


def plan(
    m: Qwen3MoEConfig,
    seq_length: int,
    micro_batch: int,
    global_batch: int,
    gpu_memory_gb: float,
    nodes: int,
    gpus_per_node: int = 8,
) -> list[Estimate]:
    """The layouts that fit, fastest (by the relative estimate) first."""
    world = nodes * gpus_per_node
    fits = []
    for layout in candidate_layouts(m, world, seq_length):
        dp = world // (layout.tp * layout.cp * layout.pp)
        if global_batch % (micro_batch * dp):
            continue
        result = estimate(m, layout, seq_length, micro_batch, global_batch, world, gpus_per_node)
        if result.total_gb <= gpu_memory_gb:
            fits.append(result)
    return sorted(fits, key=lambda e: (e.relative_step_time, e.total_gb))
