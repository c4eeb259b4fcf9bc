"""Integration test (one gloo rank): Megatron-LM's own checkpoint loader loads our checkpoints.

`megatron.training.checkpointing.load_checkpoint` - Megatron-LM's `pretrain_gpt.py --load` path,
shipped in the megatron-core 0.19.2 wheel as `megatron.training` - runs on CPU with arguments
parsed by Megatron-LM's own `parse_args`/`validate_args`, on a checkpoint written by our HF
import, into a model with our layer spec (whose sharded keys equal the TE spec's:
tests/unit/test_te_keys.py). Weights-only: `--finetune --no-load-optim --no-load-rng`, and a
release checkpoint without `--finetune` (its `args` pass Megatron-LM's argument checks).
"""

from __future__ import annotations

import sys

import pytest

from megatron_agentic.testing.distributed import run_distributed
from megatron_agentic.testing.hf_fixtures import make_tiny_hf_model


def _load_with_megatron_lm(checkpoint: str, flags: list[str]) -> tuple:
    import torch
    import yaml
    from megatron.training import global_vars
    from megatron.training.arguments import parse_args, validate_args
    from megatron.training.checkpointing import get_checkpoint_version, load_checkpoint

    from megatron_agentic import checkpointing, parallel
    from megatron_agentic.model import Qwen3MoEConfig, build_model, transformer_config

    release = checkpointing.iteration_dir(checkpoint, checkpointing.RELEASE)
    model_cfg = Qwen3MoEConfig(**yaml.safe_load((release / "model_config.yaml").read_text()))
    layout = parallel.ParallelConfig()
    parallel.initialize(layout)
    config = transformer_config(model_cfg, layout)
    sys.argv = ["pretrain_gpt.py", "--load", checkpoint, "--ckpt-format", "torch_dist", *flags]
    sys.argv += ["--num-layers", str(model_cfg.num_layers), "--hidden-size"]
    sys.argv += [str(model_cfg.hidden_size), "--num-attention-heads"]
    sys.argv += [str(model_cfg.num_attention_heads), "--micro-batch-size", "1"]
    sys.argv += ["--seq-length", "64", "--max-position-embeddings", "1024"]
    sys.argv += ["--position-embedding-type", "rope", "--no-position-embedding"]
    args = parse_args()
    validate_args(args)
    global_vars.set_global_variables(args, build_tokenizer=False)
    theirs = build_model(model_cfg, config, 64)
    iteration, _ = load_checkpoint(theirs, None, None, strict=True)
    torch.manual_seed(7)  # other initial values
    ours = build_model(model_cfg, config, 64)
    checkpointing.load_checkpoint(checkpoint, ours, None, None, load_optimizer=False)
    parallel.destroy()
    reference = dict(ours[0].named_parameters())
    differ = [n for n, p in theirs[0].named_parameters() if not torch.equal(p, reference[n])]
    return iteration, get_checkpoint_version(), len(reference), differ


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from tools.convert_checkpoint import main as convert

    root = tmp_path_factory.mktemp("interop")
    hf = make_tiny_hf_model(root / "hf")
    assert convert(["hf-to-megatron", "--hf-model", str(hf), "--output", str(root / "ckpt")]) == 0
    return str(root / "ckpt")


@pytest.mark.parametrize(
    "flags",
    [["--finetune", "--no-load-optim", "--no-load-rng"], ["--no-load-optim"]],
    ids=["finetune", "release_with_args_check"],
)
def test_megatron_lm_loader_reads_our_weights(imported, flags):
    ((iteration, version, count, differ),) = run_distributed(
        _load_with_megatron_lm, 1, imported, flags, timeout=600
    )
    assert iteration == 0 and version == 3.0
    assert count > 20 and differ == []
