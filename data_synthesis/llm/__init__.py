"""LLM backends behind one interface: chat prompts in, one completion per prompt out, with a JSON
schema the reply must follow when the caller gives one.

`Backend.generate(prompts, seed, schema)`: `prompts` are chat message lists; `schema` a JSON schema.
Backends constrain decoding to the schema where they can - vLLM's structured outputs, the
OpenAI-compatible `response_format: json_schema`, xgrammar's logits processor under transformers -
and callers still parse strictly (llm/json_task.py), so a backend that cannot constrain only
costs retries. Thinking models (Qwen3) have thinking turned off through the chat template
(`enable_thinking=False`), and any `<think>` block left in a reply is stripped before parsing.

Backends: vLLM offline batches (production, GPU), an OpenAI-compatible endpoint you run
(`vllm serve`; retries, timeouts), and transformers (CPU runs, tests). `build_backend` returns
None for the heuristic baseline (no LLM).
"""

from __future__ import annotations

import re

from data_synthesis.config import BackendConfig

Messages = list[dict]
HEURISTIC_TYPES = ("heuristic", "template")
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


class Backend:
    """Generates one reply per chat prompt of a batch."""

    name = "llm"
    constrained = False  # whether `schema` is enforced while decoding

    def generate(
        self,
        prompts: list[Messages],
        seed: int,
        schema: dict | None = None,
        stop: list[str] | None = None,
    ) -> list[str]:
        """One reply per prompt. `schema`: a JSON schema the reply must follow; `stop`: strings
        that end a reply (not included in it). Request i of a batch is sampled with seed + i."""
        raise NotImplementedError


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """The text up to the first stop string (stop strings are not part of replies)."""
    for marker in stop or []:
        at = text.find(marker)
        if at >= 0:
            text = text[:at]
    return text


LLMBackend = Backend  # the old name


def option(config: BackendConfig, key: str, default):
    """A backend setting that older configs may lack (defaults documented in config.py)."""
    return getattr(config, key, default)


def chat_template_kwargs(config: BackendConfig) -> dict:
    """Keyword arguments for the chat template: Qwen3-style thinking off unless asked for."""
    return {"enable_thinking": bool(option(config, "enable_thinking", False))}


def strip_thinking(reply: str) -> tuple[str, bool]:
    """The reply without `<think>...</think>` blocks (or an unclosed leading one); and whether
    one was there."""
    stripped = _THINK_BLOCK.sub("", reply)
    if "</think>" in stripped:  # the template opened the block in the prompt
        stripped = stripped.split("</think>", 1)[1]
    if stripped.lstrip().startswith("<think>"):  # never closed: nothing usable
        stripped = ""
    return stripped.strip(), stripped != reply


def build_backend(config: BackendConfig) -> Backend | None:
    """The configured backend; None for the heuristic baseline (backend.type: heuristic)."""
    if config.type in HEURISTIC_TYPES:
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
    raise ValueError(
        f"backend.type {config.type!r}: choose heuristic, transformers, vllm or openai"
    )
