"""Integration test (one gloo rank): our local-spec model saves exactly the sharded tensor keys of
megatron-core's TransformerEngine spec, for Qwen3-MoE and dense Qwen3; and a checkpoint saved
under the old local key (`mlp.linear_fc1.layer_norm_weight` in an MoE layer) still loads.

TransformerEngine cannot be imported here, so megatron-core 0.19.2's own TE spec functions
(`get_gpt_decoder_block_spec(use_transformer_engine=True)` in gpt_layer_specs.py, which decide
which norms exist, which are fused into the next linear, and the sharded key maps) are run with
TE's leaf modules replaced by local ones under TE's parameter names: TELayerNormColumnParallelLinear
holds `weight` and `layer_norm_weight`; TENorm holds `weight`; experts are SequentialMLP, whose
keys megatron-core documents as interchangeable with TEGroupedMLP's. TE's `_extra_state` entries
(FP8 metadata, not tensors) are outside this comparison.
"""

from __future__ import annotations

import pytest

from megatron_agentic.testing.distributed import run_distributed


def _stand_in_te(monkeypatch_target) -> None:
    """Point gpt_layer_specs' TE names at local modules with TE's parameter names."""
    import torch
    from megatron.core.models.backends import LocalSpecProvider
    from megatron.core.models.gpt import gpt_layer_specs
    from megatron.core.tensor_parallel import ColumnParallelLinear

    from megatron_agentic.layer_specs import RMSNorm

    class LayerNormColumnParallelLinear(ColumnParallelLinear):
        def __init__(self, input_size, *args, config, **kwargs):
            super().__init__(input_size, *args, config=config, **kwargs)
            self.layer_norm_weight = torch.nn.Parameter(torch.ones(input_size))

    class StandInTE(LocalSpecProvider):
        def fuse_layernorm_and_linear(self):
            return True

        def column_parallel_layer_norm_linear(self):
            return LayerNormColumnParallelLinear

        def layer_norm(self, rms_norm=False, for_qk=False, has_residual=False):
            return RMSNorm

    monkeypatch_target.TESpecProvider = StandInTE
    monkeypatch_target.TENorm = RMSNorm
    assert gpt_layer_specs is monkeypatch_target


def _keys(dense: bool) -> tuple[set, set]:
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor
    from megatron.core.models.gpt import GPTModel, gpt_layer_specs

    from megatron_agentic import parallel
    from megatron_agentic.layer_specs import decoder_block_spec
    from megatron_agentic.model import get_preset, transformer_config

    model_cfg = get_preset("tiny", **({"num_experts": 0} if dense else {}))
    layout = parallel.ParallelConfig()
    parallel.initialize(layout)
    config = transformer_config(model_cfg, layout)

    def keys(spec) -> set:
        model = GPTModel(config, spec, model_cfg.vocab_size, 64)
        state = model.sharded_state_dict()
        return {v.key for v in nested_values(state) if isinstance(v, ShardedTensor)}

    local = keys(decoder_block_spec(config, use_transformer_engine=False))
    _stand_in_te(gpt_layer_specs)
    te = keys(gpt_layer_specs.get_gpt_decoder_block_spec(config, use_transformer_engine=True))
    parallel.destroy()
    return local, te


@pytest.mark.parametrize("dense", [False, True], ids=["qwen3_moe", "qwen3"])
def test_local_spec_saves_te_keys(dense):
    ((local, te),) = run_distributed(_keys, 1, dense)
    assert local == te, f"local only: {sorted(local - te)}; TE only: {sorted(te - local)}"
    norm = "decoder.layers.mlp.linear_fc1.layer_norm_weight"
    assert (norm in te) == dense  # an MoE layer's pre-MLP norm is its own module under TE
    assert ("decoder.layers.pre_mlp_layernorm.weight" in te) == (not dense)


def _save_with_old_norm_key_and_load(directory: str) -> list[bool]:
    import torch
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.dict_utils import nested_values

    from megatron_agentic import checkpointing, parallel
    from megatron_agentic.model import build_model, get_preset, transformer_config

    model_cfg, layout = get_preset("tiny"), parallel.ParallelConfig()
    parallel.initialize(layout)
    config = transformer_config(model_cfg, layout)
    saved = build_model(model_cfg, config, 64)[0]
    state = checkpointing.model_sharded_state_dict([saved])
    for entry in nested_values(state):  # the key the local spec used before
        entry.key = entry.key.replace(
            "decoder.layers.pre_mlp_layernorm.", "decoder.layers.mlp.linear_fc1.layer_norm_"
        )
    release = checkpointing.iteration_dir(directory, checkpointing.RELEASE)
    release.mkdir(parents=True)
    dist_checkpointing.save(state, str(release))
    checkpointing.write_latest(directory, checkpointing.RELEASE)
    torch.manual_seed(123)  # different initial values
    loaded = build_model(model_cfg, config, 64)[0]
    checkpointing.load_checkpoint(directory, [loaded], None, None, load_optimizer=False)
    parallel.destroy()
    ours = dict(loaded.named_parameters())
    return [torch.equal(p, ours[n]) for n, p in saved.named_parameters()]


def test_checkpoint_with_old_norm_key_still_loads(tmp_path):
    from megatron_agentic.checkpoint_keys import checkpoint_keys

    (equal,) = run_distributed(_save_with_old_norm_key_and_load, 1, str(tmp_path))
    assert equal and all(equal)
    assert "decoder.layers.mlp.linear_fc1.layer_norm_weight" in checkpoint_keys(
        tmp_path / "release"
    )
