"""Checkpoint conversion between Hugging Face and megatron-core, driven by one table per model.

    table.py      Rule / NameTable / the named transforms (QKV interleave, gate-up fuse), each
                  with its inverse: one table per family serves import and export
    qwen3.py      dense Qwen3 (Qwen3ForCausalLM): its table and config.json mapping
    qwen3_moe.py  Qwen3-MoE (Qwen3MoeForCausalLM): Qwen3's shared rules plus the MoE block
    hf_files.py   streaming safetensors reader, sharded safetensors writer
    engine.py     rank import, layer-by-layer export, megatron-core sharding metadata, the checks
                  run before any process starts, publishing outputs safely

Adding a model family means adding one module like qwen3.py (MODEL_TYPE, TABLE, `handles`,
`model_config_from_hf`, `hf_config_from_model`) and naming it in FAMILIES. Nothing here imports
megatron-core at import time, so the converter's `--help` stays fast.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from megatron_agentic.conversion.table import ConversionError

FAMILIES = ("qwen3_moe", "qwen3")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"megatron_agentic.conversion.{name}")


def family_for_hf(config: dict, source: str = "config.json") -> ModuleType:
    """The family module for an HF config.json (by its model_type)."""
    kind = config.get("model_type")
    for name in FAMILIES:
        module = _module(name)
        if module.MODEL_TYPE == kind:
            return module
    known = ", ".join(_module(name).MODEL_TYPE for name in FAMILIES)
    raise ConversionError(f"{source}: model_type {kind!r} is not supported (known: {known})")


def family_for_model(model_cfg) -> ModuleType:
    """The family module for one of our architecture configs."""
    for name in FAMILIES:
        module = _module(name)
        if module.handles(model_cfg):
            return module
    raise ConversionError(f"no conversion family handles {model_cfg}")


def model_config_from_hf(config: dict, source: str = "config.json"):
    """Our architecture config from an HF config.json of any supported family."""
    return family_for_hf(config, source).model_config_from_hf(config, source)


__all__ = ["FAMILIES", "ConversionError", "family_for_hf", "family_for_model"]
