"""Parallel-layout planning: per-GPU memory and a relative step-time estimate for Qwen3-MoE.

Memory per GPU (bytes), for the most loaded pipeline stage:
- parameters: exact per-rank counts of megatron-core's GPTModel (tested against it), split into
  dense parameters (sharded by TP) and expert parameters (sharded by EP and ETP);
- bf16 weights (2 B) + fp32 gradient buffers (4 B) per parameter;
- distributed optimizer: fp32 master weights + two Adam moments (12 B) per parameter, sharded
  over the data-parallel group of each kind (dense: world/(TP*CP*PP); experts: world/(EP*ETP*PP));
- activations, per layer and micro-batch, for the s/(TP*CP) tokens of a rank (SP splits by TP),
  itemised by `activation_elements` (what autograd keeps for the backward: norm inputs and outputs,
  Q/K/V and their q/k-norm copies, the attention output, router logits, and per routed copy the
  expert input, fc1 and activation outputs and fc2 output; flash attention keeps no score matrix).
  Full recompute keeps each layer's input; selective recompute (megatron-core's recompute_modules:
  layernorm, core_attn, moe_act, moe) drops its modules' items; the first stage holds PP
  micro-batches in flight (interleaving adds (PP-1)/VPP more), plus one layer's working set. The
  itemisation is checked against autograd's saved tensors on CPU by benchmarks/bench_activations.py;
  its error is in docs/training.md;
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

from megatron_agentic.flops import forward_flops_per_token, training_flops_per_token
from megatron_agentic.model import Qwen3MoEConfig

GB = 1024**3
FIXED_OVERHEAD_GB = 6.0  # CUDA context, NCCL, allocator fragmentation (rule of thumb)
DEFAULT_SAFETY_MARGIN = 0.10  # plan() leaves this fraction of GPU memory unused

# megatron-core's selective-recompute modules that apply to Qwen3-MoE (TransformerConfig
# recompute_modules), and the share of a layer's forward time each adds back when recomputed
# (elementwise modules: memory-bound, ~1%; core_attn and moe from their FLOPs, see _recompute_cost).
RECOMPUTE_MODULES = ("layernorm", "core_attn", "moe_act", "moe")
SELECTIVE_CHOICES = (("moe_act",), ("layernorm", "moe_act"), ("core_attn",), ("moe",))


@dataclass(frozen=True)
class Layout:
    tp: int = 1
    pp: int = 1
    vpp: int = 1
    cp: int = 1
    ep: int = 1
    etp: int = 1
    recompute: str = "full"  # full | none | selective
    recompute_modules: tuple[str, ...] = ()  # selective: a subset of RECOMPUTE_MODULES

    def __post_init__(self):
        if self.recompute not in ("full", "none", "selective"):
            raise ValueError(f"recompute={self.recompute!r}: expected full | none | selective")
        unknown = set(self.recompute_modules) - set(RECOMPUTE_MODULES)
        if unknown or (self.recompute == "selective") != bool(self.recompute_modules):
            raise ValueError(
                f"recompute_modules={self.recompute_modules}: selective recompute takes a "
                f"non-empty subset of {RECOMPUTE_MODULES} (and only selective does)"
            )

    def __str__(self) -> str:
        recompute = self.recompute
        if self.recompute_modules:
            recompute += "[" + ",".join(self.recompute_modules) + "]"
        return (
            f"TP={self.tp} PP={self.pp} VPP={self.vpp} CP={self.cp} EP={self.ep} "
            f"ETP={self.etp} recompute={recompute}"
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


def layout_of(parallel, training) -> Layout:
    """The planner's Layout of a training configuration's `parallel` and `training` sections."""
    granularity = training.recompute_granularity
    modules = tuple(training.recompute_modules or ("core_attn",))  # megatron-core's default
    return Layout(
        tp=parallel.tp,
        pp=parallel.pp,
        vpp=parallel.vpp,
        cp=parallel.cp,
        ep=parallel.ep,
        etp=parallel.etp,
        recompute=granularity or "none",
        recompute_modules=modules if granularity == "selective" else (),
    )


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
    per_layer = 2 * tokens * activation_elements_per_token(m, layout, seq_length // layout.cp)
    working_layer = (
        2
        * tokens
        * activation_elements_per_token(
            m, Layout(tp=layout.tp, cp=layout.cp, recompute="none"), seq_length // layout.cp
        )
    )  # the layer being (re)computed
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


def activation_items(
    m: Qwen3MoEConfig, keys_per_query: int, flash: bool = True
) -> dict[str, tuple[float, str | None]]:
    """Elements autograd keeps per token and layer, without recompute: name -> (elements, the
    recompute module that drops it, or None). `keys_per_query`: the keys a query attends over
    (the sequence on one CP rank's gathered K/V); only unfused attention keeps its score matrix."""
    h, d, heads, groups = m.hidden_size, m.head_dim, m.num_attention_heads, m.num_query_groups
    per_copy = m.moe_router_topk
    items = {
        "norm inputs (residual stream)": (2 * h, None),
        "norm outputs": (2 * h, "layernorm"),
        "q, k, v": ((heads + 2 * groups) * d, None),
        "q/k norm and rotary copies": (2 * (heads + groups) * d if m.qk_layernorm else 0, None),
        "attention output": (heads * d, None),
        "router logits and probabilities (fp32)": (4 * m.num_experts, None),
        "expert inputs (top-k copies)": (per_copy * h, "moe"),
        "fc1 outputs (gate and up)": (per_copy * 2 * m.moe_ffn_hidden_size, "moe"),
        "activation outputs": (per_copy * m.moe_ffn_hidden_size, "moe_act"),
        "fc2 outputs": (per_copy * h, "moe"),
    }
    if not flash:  # megatron-core's local (non-TE) layers, as on CPU
        items["attention probabilities (unfused)"] = (heads * keys_per_query, "core_attn")
        items["GQA-expanded k, v (unfused)"] = (2 * heads * d, "core_attn")
        items["SwiGLU halves and silu output (unfused)"] = (
            per_copy * 2 * m.moe_ffn_hidden_size,
            "moe",
        )
    return items


def activation_elements_per_token(
    m: Qwen3MoEConfig, layout: Layout, keys_per_query: int, flash: bool = True
) -> float:
    """Elements one layer keeps per token of a rank under the layout's recompute setting."""
    if layout.recompute == "full":
        return m.hidden_size  # the layer's input only
    dropped = set(layout.recompute_modules)
    if "moe" in dropped:
        dropped.add("moe_act")
    return sum(
        elements
        for elements, module in activation_items(m, keys_per_query, flash).values()
        if module not in dropped
    )


def _recompute_cost(m: Qwen3MoEConfig, layout: Layout, seq_length: int) -> float:
    """Extra forward work of the recompute setting, as a fraction of a training step."""
    if layout.recompute == "full":
        return 1 / 3  # one more forward per step (forward = 1/3 of forward + backward)
    if layout.recompute == "none":
        return 0.0
    per_layer = (forward_flops_per_token(m, seq_length) - 2 * m.hidden_size * m.vocab_size) / (
        m.num_layers
    )
    attention = 2 * seq_length * m.num_attention_heads * m.head_dim
    experts = m.moe_router_topk * 6 * m.hidden_size * m.moe_ffn_hidden_size
    share = {"layernorm": 0.01, "moe_act": 0.01, "core_attn": attention / per_layer}
    share["moe"] = experts / per_layer + 0.05  # + the dispatch all-to-all, repeated
    return sum(share[module] for module in layout.recompute_modules) / 3


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
    efficiency /= 1.0 + _recompute_cost(m, layout, seq_length)
    return flops / efficiency / 1e15


def candidate_layouts(m: Qwen3MoEConfig, world_size: int, seq_length: int) -> list[Layout]:
    """Layouts megatron-core accepts for the model and world size."""
    powers = [1, 2, 4, 8, 16]
    out = []
    recomputes = [("full", ()), ("none", ())] + [("selective", c) for c in SELECTIVE_CHOICES]
    for tp, pp, cp, ep, vpp, (recompute, modules) in itertools.product(
        powers, powers, powers, powers, [1, 2], recomputes
    ):
        layout = Layout(
            tp=tp,
            pp=pp,
            vpp=vpp,
            cp=cp,
            ep=ep,
            etp=1,
            recompute=recompute,
            recompute_modules=modules,
        )
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
    safety_margin: float = DEFAULT_SAFETY_MARGIN,
) -> list[Estimate]:
    """The layouts whose estimate fits in (1 - safety_margin) of the GPU memory, fastest (by the
    relative estimate) first."""
    world = nodes * gpus_per_node
    fits = []
    for layout in candidate_layouts(m, world, seq_length):
        dp = world // (layout.tp * layout.cp * layout.pp)
        if global_batch % (micro_batch * dp):
            continue
        result = estimate(m, layout, seq_length, micro_batch, global_batch, world, gpus_per_node)
        if result.total_gb <= gpu_memory_gb * (1 - safety_margin):
            fits.append(result)
    return sorted(fits, key=lambda e: (e.relative_step_time, e.total_gb))
