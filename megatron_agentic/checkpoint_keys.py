"""Renames of sharded checkpoint keys, so checkpoints written under older key names still load.

Our local spec emits TransformerEngine's keys (see layer_specs.py). Before that, an MoE layer's
pre-MLP norm was saved as `decoder.layers.mlp.linear_fc1.layer_norm_weight` (the local spec's key
map); TE's MoE layer keeps the norm as its own module, `decoder.layers.pre_mlp_layernorm.weight`.
`rename_legacy_keys` points a state dict about to be loaded at the old names wherever the
checkpoint on disk has only those (optimizer state keys embed the same names, so they follow);
`current_key` is the same map for readers of raw checkpoint keys (the HF exporter).
A dense layer's `mlp.linear_fc1.layer_norm_weight` is TE's key too: it is never renamed, because
a dense checkpoint holds that key and the rename applies only to keys missing from the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

# (old, current) fragments of sharded keys.
LEGACY_RENAMES = (
    ("decoder.layers.mlp.linear_fc1.layer_norm_", "decoder.layers.pre_mlp_layernorm."),
)


def current_key(key: str) -> str:
    """An old key's current name (unchanged if it has none)."""
    for old, new in LEGACY_RENAMES:
        if old in key:
            return key.replace(old, new)
    return key


def checkpoint_keys(directory: str | Path) -> set[str]:
    """Every key stored in a torch_dist checkpoint directory (from its metadata file)."""
    from torch.distributed.checkpoint import FileSystemReader

    return set(FileSystemReader(str(directory)).read_metadata().state_dict_metadata)


def rename_legacy_keys(state: dict, directory: str | Path) -> int:
    """Make the sharded entries of `state` whose keys the checkpoint lacks read their old names,
    where the checkpoint has those. Returns how many entries were renamed."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedBase

    on_disk = checkpoint_keys(directory)
    renamed = 0
    for entry in nested_values(state):
        if not isinstance(entry, ShardedBase) or entry.key in on_disk:
            continue
        for old, new in LEGACY_RENAMES:
            candidate = entry.key.replace(new, old)
            if candidate != entry.key and candidate in on_disk:
                entry.key = candidate
                renamed += 1
                break
    return renamed
