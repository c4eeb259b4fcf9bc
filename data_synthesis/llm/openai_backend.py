"""A local OpenAI-compatible completions endpoint (e.g. `vllm serve MODEL` on the cluster)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from data_synthesis.config import BackendConfig
from data_synthesis.llm import LLMBackend


class OpenAICompatibleBackend(LLMBackend):
    """POSTs chat completions to `backend.base_url` (no commercial API: a server you run).
    A batch's requests are sent concurrently, so that the server batches them."""

    def __init__(self, config: BackendConfig):
        if not config.base_url or not config.model:
            raise ValueError("backend.base_url and backend.model are required for type=openai")
        self.config = config
        self.name = f"openai:{config.model}@{config.base_url}"
        self.url = config.base_url.rstrip("/") + "/chat/completions"

    def _complete(self, prompt: str, seed: int) -> str:
        body = json.dumps(
            {
                "model": self.config.model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens,
                "seed": seed,
            }
        ).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return json.loads(response.read())["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as error:
            reason = error.read().decode(errors="replace")[:2000]
            raise RuntimeError(f"{self.url} answered HTTP {error.code}: {reason}") from None

    def generate(self, prompts: list[str], seed: int) -> list[str]:
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            return list(pool.map(self._complete, prompts, range(seed, seed + len(prompts))))
