"""The Qwen3-MoE model on megatron-core: architecture config, presets, and the model provider.

`Qwen3MoEConfig` holds the architecture only (what a Hugging Face config.json holds); the parallel
layout lives in `megatron_agentic.parallel.ParallelConfig`. `build_model` turns both into
megatron-core `GPTModel` chunks for this rank's pipeline stage(s).

Why GPTModel and not HybridModel: megatron-core 0.19 marks GPTModel deprecated in favour of
HybridModel, whose stack spec is TransformerEngine-only and splits every decoder layer into an
attention layer and an MoE layer. Qwen3-MoE is a plain decoder (each layer = attention + MoE), so
GPTModel maps one-to-one onto the Hugging Face layers (conversion, pipeline layouts), and it has a
local spec that runs without TE (CPU tests, clusters without TE). Moving to HybridModel later is a
change confined to `build_model` and the converter's key map.

`num_experts=0` builds dense Qwen3 instead (every layer attention + a SwiGLU MLP of
`ffn_hidden_size`): the same GPTModel with megatron-core's plain MLP spec, used by the converter's
dense Qwen3 family.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from megatron.core.models.gpt import GPTModel
from megatron.core.transformer import TransformerConfig

from megatron_agentic.layer_specs import decoder_block_spec, transformer_engine_available


@dataclass
class RopeScaling:
    """YaRN RoPE scaling, as Qwen3 documents it for contexts beyond 32K (factor 4 -> 128K)."""

    type: str = "yarn"
    factor: float = 4.0
    original_max_position_embeddings: int = 32768
    beta_fast: float = 32.0
    beta_slow: float = 1.0


@dataclass
class Qwen3MoEConfig:
    """The Qwen3-MoE architecture (decoder-only; every layer has attention and a routed MoE).
    With num_experts=0, dense Qwen3 (every layer has attention and a SwiGLU MLP)."""

    num_layers: int = 48
    hidden_size: int = 2048
    num_attention_heads: int = 32
    num_query_groups: int = 4
    head_dim: int = 128
    ffn_hidden_size: int = (
        6144  # dense FFN size (HF intermediate_size); unused when all layers are MoE
    )
    num_experts: int = 128  # 0: dense Qwen3
    moe_router_topk: int = 8
    moe_ffn_hidden_size: int = 768
    norm_topk_prob: bool = True
    vocab_size: int = 151936
    max_position_embeddings: int = 40960
    rotary_base: float = 1_000_000.0
    rope_scaling: RopeScaling | None = None
    norm_epsilon: float = 1e-6
    qk_layernorm: bool = True
    untie_embeddings_and_output_weights: bool = True
    init_method_std: float = 0.02
    moe_aux_loss_coeff: float = 1e-3
    # "aux_loss" (per micro-batch), "seq_aux_loss", or "global_aux_loss" (global-batch balancing).
    moe_router_load_balancing_type: str = "aux_loss"

    def __post_init__(self):
        if isinstance(self.rope_scaling, dict):
            self.rope_scaling = RopeScaling(**self.rope_scaling)

    def num_parameters(self) -> tuple[int, int]:
        """(total, active per token) parameter counts of the architecture."""
        h, layers = self.hidden_size, self.num_layers
        attention = (
            h * self.head_dim * (self.num_attention_heads + 2 * self.num_query_groups)
            + self.num_attention_heads * self.head_dim * h
            + (2 * self.head_dim if self.qk_layernorm else 0)
        )
        expert = 3 * h * self.moe_ffn_hidden_size
        per_layer_fixed = attention + h * self.num_experts + 2 * h  # + router + two norms
        embeddings = self.vocab_size * h * (2 if self.untie_embeddings_and_output_weights else 1)
        if self.num_experts:
            total_mlp, active_mlp = self.num_experts * expert, self.moe_router_topk * expert
        else:  # dense: one MLP of ffn_hidden_size, always active
            total_mlp = active_mlp = 3 * h * self.ffn_hidden_size
        total = layers * (per_layer_fixed + total_mlp) + embeddings + h
        active = layers * (per_layer_fixed + active_mlp) + embeddings + h
        return total, active


_TINY = Qwen3MoEConfig(
    num_layers=2,
    hidden_size=64,
    num_attention_heads=4,
    num_query_groups=2,
    head_dim=16,
    ffn_hidden_size=128,
    num_experts=4,
    moe_router_topk=2,
    moe_ffn_hidden_size=32,
    vocab_size=512,
    max_position_embeddings=1024,
)

PRESETS: dict[str, Qwen3MoEConfig] = {
    # Qwen/Qwen3-30B-A3B(-Base): 30.5B parameters, 3.3B active.
    "qwen3_30b_a3b": Qwen3MoEConfig(),
    # Same shape, 128K context through YaRN (Qwen3's documented long-context setting).
    "qwen3_30b_a3b_128k": Qwen3MoEConfig(
        max_position_embeddings=131072, rope_scaling=RopeScaling(factor=4.0)
    ),
    # Tiny stand-ins of the same shape for CPU tests and the quickstart.
    "tiny": _TINY,
    "tiny_128k": dataclasses.replace(
        _TINY,
        max_position_embeddings=4096,
        rope_scaling=RopeScaling(factor=4.0, original_max_position_embeddings=1024),
    ),
}


def get_preset(name: str, **overrides) -> Qwen3MoEConfig:
    """A copy of a named preset, with fields overridden."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return dataclasses.replace(PRESETS[name], **overrides)


def transformer_config(
    model: Qwen3MoEConfig,
    parallel,
    *,
    bf16: bool = False,
    recompute_granularity: str | None = None,
    recompute_method: str | None = None,
    recompute_num_layers: int | None = None,
    recompute_modules: list[str] | None = None,
) -> TransformerConfig:
    """megatron-core's TransformerConfig for this architecture, layout and precision."""
    use_te = transformer_engine_available()
    config = TransformerConfig(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups,
        kv_channels=model.head_dim,
        ffn_hidden_size=model.ffn_hidden_size,
        normalization="RMSNorm",
        layernorm_epsilon=model.norm_epsilon,
        qk_layernorm=model.qk_layernorm,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=model.init_method_std,
        num_moe_experts=model.num_experts or None,
        moe_router_topk=model.moe_router_topk,
        moe_ffn_hidden_size=model.moe_ffn_hidden_size if model.num_experts else None,
        # softmax over the top-k logits == softmax over all, top-k, renormalised (norm_topk_prob).
        moe_router_pre_softmax=not model.norm_topk_prob,
        moe_router_score_function="softmax",
        moe_router_dtype="fp32",
        moe_router_load_balancing_type=model.moe_router_load_balancing_type,
        moe_aux_loss_coeff=model.moe_aux_loss_coeff,
        moe_token_dispatcher_type=parallel.moe_token_dispatcher,
        moe_grouped_gemm=use_te,
        moe_permute_fusion=use_te,
        tensor_model_parallel_size=parallel.tp,
        pipeline_model_parallel_size=parallel.pp,
        virtual_pipeline_model_parallel_size=parallel.vpp if parallel.vpp > 1 else None,
        # Megatron-LM's default for the interleaved schedule. Batched p2p posts a stage's send to
        # "prev" before its send to "next"; with 2 pipeline ranks both peers are the same rank, and
        # the receiver matches them in the opposite order (seen on gloo: activations and gradients
        # swapped between micro-batches).
        overlap_p2p_comm=parallel.vpp > 1,
        batch_p2p_comm=parallel.vpp == 1,
        context_parallel_size=parallel.cp,
        expert_model_parallel_size=parallel.ep,
        expert_tensor_parallel_size=parallel.etp,
        sequence_parallel=parallel.tp > 1,
        bf16=bf16,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,
        # Fusions need TE/apex or GPU kernels; the unfused paths compute the same function.
        bias_dropout_fusion=use_te,
        masked_softmax_fusion=use_te,
        apply_rope_fusion=use_te,
        gradient_accumulation_fusion=False,
        persist_layer_norm=False,
        use_cpu_initialization=not torch.cuda.is_available(),
        recompute_granularity=recompute_granularity,
        recompute_method=recompute_method,
        recompute_num_layers=recompute_num_layers,
        recompute_modules=recompute_modules,
    )
    if model.rope_scaling is not None:
        # GPTModel reads YaRN settings off the config by these names.
        config.yarn_rotary_scaling_factor = model.rope_scaling.factor
        config.yarn_original_max_position_embeddings = (
            model.rope_scaling.original_max_position_embeddings
        )
        config.yarn_beta_fast = model.rope_scaling.beta_fast
        config.yarn_beta_slow = model.rope_scaling.beta_slow
        config.yarn_mscale = 1.0
        config.yarn_mscale_all_dim = 0.0
        config.yarn_correction_range_round_to_int = True
    return config


def build_model(
    model: Qwen3MoEConfig, config: TransformerConfig, seq_length: int
) -> list[GPTModel]:
    """This rank's model chunks (one per virtual pipeline stage) of a Qwen3-MoE GPTModel."""
    from megatron.core import parallel_state

    use_te = transformer_engine_available()
    vpp = config.virtual_pipeline_model_parallel_size or 1
    chunks = []
    for vp_stage in range(vpp):
        vp = vp_stage if vpp > 1 else None
        chunks.append(
            GPTModel(
                config=config,
                transformer_layer_spec=decoder_block_spec(config, use_te, vp_stage=vp),
                vocab_size=model.vocab_size,
                max_sequence_length=max(seq_length, model.max_position_embeddings),
                pre_process=parallel_state.is_pipeline_first_stage(
                    ignore_virtual=False, vp_stage=vp
                ),
                post_process=parallel_state.is_pipeline_last_stage(
                    ignore_virtual=False, vp_stage=vp
                ),
                share_embeddings_and_output_weights=not model.untie_embeddings_and_output_weights,
                position_embedding_type="yarn" if model.rope_scaling is not None else "rope",
                rotary_base=int(model.rotary_base),
                vp_stage=vp,
            )
        )
    if not config.use_cpu_initialization:  # as Megatron-LM's get_model: modules built on the
        for chunk in chunks:  # host (our RMSNorm) join the rest on this rank's GPU
            chunk.cuda(torch.cuda.current_device())
    return chunks
