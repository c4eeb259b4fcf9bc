"""vLLM offline batch generation: a whole shard's prompts in one `LLM.generate` call."""

from __future__ import annotations

from data_synthesis.config import BackendConfig
from data_synthesis.llm import LLMBackend


class VLLMBackend(LLMBackend):
    """Tensor-parallel over `backend.tensor_parallel_size` GPUs of the node."""

    def __init__(self, config: BackendConfig):
        try:
            from vllm import LLM
        except ImportError as error:
            raise ImportError(
                "backend.type=vllm needs vLLM on a GPU machine: pip install 'megatron-agentic[synth]' "
                f"(or use backend.type=transformers on CPU) [{error}]"
            ) from None
        if not config.model:
            raise ValueError("backend.model: the vllm backend needs a model directory")
        self.config = config
        self.name = f"vllm:{config.model}"
        self.llm = LLM(
            model=config.model, tensor_parallel_size=config.tensor_parallel_size, dtype=config.dtype
        )

    def generate(self, prompts: list[str], seed: int) -> list[str]:
        """Prompts in the model's chat template when it has one (as the transformers backend);
        request i is sampled with seed + i, so repeated prompts in a batch still differ."""
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
                seed=seed + i,
            )
            for i in range(len(prompts))
        ]
        if self.llm.get_tokenizer().chat_template:
            outputs = self.llm.chat(
                [[{"role": "user", "content": p}] for p in prompts], params, use_tqdm=False
            )
        else:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [output.outputs[0].text for output in outputs]
