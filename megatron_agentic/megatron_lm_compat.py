"""What Megatron-LM's `pretrain_gpt.py --load` expects in a checkpoint besides the tensors.

Megatron-LM's loader (megatron/training/checkpointing.py, shipped in the megatron-core wheel as
`megatron.training`) reads the common state of a torch_dist checkpoint: `args` (an
argparse.Namespace; without it it warns and assumes TP=PP=1 and skips its argument checks) and
`checkpoint_version` (3.0 for megatron-core models; missing means 0). Its RNG state is the
ShardedObject `rng_state` sharded over (PP, TP), a list with one dict per data-parallel rank, keyed
`random_rng_state`, `np_rng_state`, `torch_rng_state`, `cuda_rng_state`, `rng_tracker_states`.
We save the same (`common_state`, `RNG_NAMES`) and still read the names our checkpoints used
before (`rng_with_current_names`). tests/integration/test_megatron_lm_interop.py runs Megatron-LM's own
`load_checkpoint` on our checkpoint.
"""

from __future__ import annotations

import argparse

import torch

CHECKPOINT_VERSION = 3.0
# our old RNG names -> Megatron-LM's
RNG_NAMES = {
    "random": "random_rng_state",
    "numpy": "np_rng_state",
    "torch": "torch_rng_state",
    "cuda": "cuda_rng_state",
    "tracker": "rng_tracker_states",
}


def common_state(model_cfg, iteration: int, consumed_samples: int) -> dict:
    """`args` and `checkpoint_version` as Megatron-LM saves them (the fields its loader reads)."""
    from megatron.core import parallel_state

    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    args = argparse.Namespace(
        num_layers=model_cfg.num_layers,
        hidden_size=model_cfg.hidden_size,
        num_attention_heads=model_cfg.num_attention_heads,
        max_position_embeddings=model_cfg.max_position_embeddings,
        add_position_embedding=False,  # RoPE
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        world_size=torch.distributed.get_world_size(),
        data_parallel_size=parallel_state.get_data_parallel_world_size(),
        iteration=iteration,
        consumed_train_samples=consumed_samples,
        consumed_valid_samples=0,
        skipped_train_samples=0,
    )
    return {"args": args, "checkpoint_version": CHECKPOINT_VERSION}


def rng_with_current_names(state: dict) -> dict:
    """An RNG state dict with Megatron-LM's names, whichever names it was saved with."""
    return {RNG_NAMES.get(key, key): value for key, value in state.items()}
