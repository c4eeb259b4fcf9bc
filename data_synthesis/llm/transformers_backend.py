"""CPU (or single-GPU) generation with transformers, for small runs and tests.

Prompts go through the model's chat template with thinking off (`enable_thinking=False`, which
Qwen3's template reads and others ignore). With a JSON schema, decoding is constrained by
xgrammar's logits processor (a well-kept grammar engine, also vLLM's) when it is installed;
without it the reply is parsed strictly and retried, as for any backend.
"""

from __future__ import annotations

import json

import torch

from data_synthesis.config import BackendConfig
from data_synthesis.llm import Backend, Messages, chat_template_kwargs, cut_at_stop


class TransformersBackend(Backend):
    """A local causal LM directory (safetensors + tokenizer with a chat template)."""

    def __init__(self, config: BackendConfig):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not config.model:
            raise ValueError("backend.model: the transformers backend needs a model directory")
        self.config = config
        self.name = f"transformers:{config.model}"
        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(config.model).eval()
        self._compiler = self._grammar_compiler()
        self.constrained = self._compiler is not None

    def _grammar_compiler(self):
        try:
            import xgrammar
        except ImportError:
            return None
        info = xgrammar.TokenizerInfo.from_huggingface(
            self.tokenizer, vocab_size=self.model.config.vocab_size
        )
        return xgrammar.GrammarCompiler(info)

    def _text(self, messages: Messages) -> str:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                messages,
                tokenize=False,
                add_generation_prompt=True,
                **chat_template_kwargs(self.config),
            )
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def generate(
        self,
        prompts: list[Messages],
        seed: int,
        schema: dict | None = None,
        stop: list[str] | None = None,
    ) -> list[str]:
        if not prompts:
            return []
        torch.manual_seed(seed)
        batch = self.tokenizer([self._text(p) for p in prompts], return_tensors="pt", padding=True)
        processors = []
        if schema is not None and self._compiler is not None:
            from xgrammar.contrib.hf import LogitsProcessor

            processors.append(
                LogitsProcessor(self._compiler.compile_json_schema(json.dumps(schema)))
            )
        with torch.no_grad():
            output = self.model.generate(
                **batch,
                max_new_tokens=self.config.max_tokens,
                do_sample=self.config.temperature > 0,
                temperature=self.config.temperature or None,
                pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=processors or None,
                stop_strings=stop or None,
                tokenizer=self.tokenizer if stop else None,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [cut_at_stop(text, stop) for text in texts]
