"""CPU (or single-GPU) generation with transformers, for small runs and tests."""

from __future__ import annotations

import torch

from data_synthesis.config import BackendConfig
from data_synthesis.llm import LLMBackend


class TransformersBackend(LLMBackend):
    """A local causal LM directory; prompts are wrapped in its chat template when it has one."""

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

    def _wrap(self, prompt: str) -> str:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt

    def generate(self, prompts: list[str], seed: int) -> list[str]:
        torch.manual_seed(seed)
        batch = self.tokenizer([self._wrap(p) for p in prompts], return_tensors="pt", padding=True)
        with torch.no_grad():
            output = self.model.generate(
                **batch,
                max_new_tokens=self.config.max_tokens,
                do_sample=self.config.temperature > 0,
                temperature=self.config.temperature or None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
