"""Offline LLM backends behind one small interface, and strict JSON tasks over them.

`LLMBackend.generate(prompts, seed)` returns one completion per prompt. Backends: vLLM offline
batch generation (production, GPU; `vllm` is an optional extra imported on use), a local
OpenAI-compatible endpoint (e.g. `vllm serve` on the cluster), and transformers (CPU runs/tests).
"""

from __future__ import annotations

from data_synthesis.config import BackendConfig


class LLMBackend:
    """Generates text for a batch of prompts."""

    name = "llm"

    def generate(self, prompts: list[str], seed: int) -> list[str]:
        raise NotImplementedError


def build_backend(config: BackendConfig) -> LLMBackend | None:
    """The configured backend; None for the rule/template-based CPU default."""
    if config.type == "template":
        return None
    if config.type == "transformers":
        from data_synthesis.llm.transformers_backend import TransformersBackend

        return TransformersBackend(config)
    if config.type == "vllm":
        from data_synthesis.llm.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    if config.type == "openai":
        from data_synthesis.llm.openai_backend import OpenAICompatibleBackend

        return OpenAICompatibleBackend(config)
    raise ValueError(f"backend.type {config.type!r}: choose template, transformers, vllm or openai")
