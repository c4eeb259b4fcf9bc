"""Conversion checks shared by the tests and the GPU script: the converter's CLI in-process, and
the logits of one token batch from transformers and from a Megatron checkpoint (any layout)."""

from __future__ import annotations

from pathlib import Path

import torch

TOKENS = torch.tensor([[5, 17, 99, 3, 250, 42, 7, 311, 64, 128, 9, 77, 201, 33, 8, 2]])


def convert(*args: str) -> int:
    from tools.convert_checkpoint import main

    return main([str(a) for a in args])


def hf_logits(directory: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(TOKENS).logits


def megatron_logits(checkpoint: str, layout: dict) -> list:
    import yaml
    from megatron.core import tensor_parallel

    from megatron_agentic import checkpointing, parallel
    from megatron_agentic.conversion.engine import resolve_checkpoint
    from megatron_agentic.model import Qwen3MoEConfig, build_model, transformer_config

    model_cfg = Qwen3MoEConfig(
        **yaml.safe_load((resolve_checkpoint(checkpoint) / checkpointing.MODEL_CONFIG).read_text())
    )
    par = parallel.ParallelConfig(**layout)
    parallel.initialize(par)
    chunks = build_model(model_cfg, transformer_config(model_cfg, par), TOKENS.shape[1])
    checkpointing.load_checkpoint(checkpoint, chunks, None, None, load_optimizer=False)
    model = chunks[0].eval()
    device = next(model.parameters()).device  # the GPU where there is one
    with torch.no_grad():
        positions = torch.arange(TOKENS.shape[1], device=device).unsqueeze(0)
        logits = model(TOKENS.to(device), positions, None)
        logits = tensor_parallel.gather_from_tensor_model_parallel_region(logits)
    parallel.destroy()
    return logits.tolist()  # by value: a shared-memory tensor dies with the rank process
