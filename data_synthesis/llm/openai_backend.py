"""An OpenAI-compatible chat-completions endpoint that you run (e.g. `vllm serve MODEL`).

Each request has a timeout (`backend.request_timeout_s`) and is retried with exponential backoff
on connection errors, timeouts, HTTP 429 and 5xx (`backend.request_retries` times), then the
backend gives up with `BackendUnavailable` naming the URL, the attempts and the last error. Other
HTTP errors (a bad request, an unknown model) fail at once, with the URL and the server's reason.
JSON schemas go as `response_format: json_schema`; thinking is off via `chat_template_kwargs`.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from data_synthesis.config import BackendConfig
from data_synthesis.llm import Backend, Messages, chat_template_kwargs, option

RETRIED_HTTP = {408, 429, 500, 502, 503, 504}


class BackendUnavailable(RuntimeError):
    """The endpoint could not be reached or did not answer after all retries."""


class OpenAICompatibleBackend(Backend):
    """POSTs chat completions to `backend.base_url`; a batch's requests go concurrently (up to
    `backend.batch_size` at once), so that the server batches them."""

    constrained = True

    def __init__(self, config: BackendConfig):
        if not config.base_url or not config.model:
            raise ValueError("backend.base_url and backend.model are required for type=openai")
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.name = f"openai:{config.model}@{config.base_url}"
        self.timeout = float(option(config, "request_timeout_s", 300.0))
        self.retries = int(option(config, "request_retries", 4))
        self.backoff = float(option(config, "retry_backoff_s", 1.0))

    def _body(self, messages: Messages, seed: int, schema: dict | None, stop=None) -> bytes:
        body = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            "seed": seed,
            "chat_template_kwargs": chat_template_kwargs(self.config),
        }
        if stop:
            body["stop"] = stop
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema, "strict": True},
            }
        return json.dumps(body).encode()

    def _post(self, body: bytes) -> str:
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            payload = json.loads(response.read())
        try:
            return payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise BackendUnavailable(
                f"{self.url}: unexpected reply (no choices[0].message.content): {str(payload)[:500]}"
            ) from None

    def complete(self, messages: Messages, seed: int, schema: dict | None = None, stop=None) -> str:
        """One chat completion, retried with backoff; BackendUnavailable after the last try."""
        body = self._body(messages, seed, schema, stop)
        started, last = time.monotonic(), ""
        for attempt in range(self.retries + 1):
            try:
                return self._post(body)
            except urllib.error.HTTPError as error:
                reason = error.read().decode(errors="replace")[:1000]
                if error.code not in RETRIED_HTTP:
                    raise BackendUnavailable(
                        f"{self.url} answered HTTP {error.code}: {reason}"
                    ) from None
                last = f"HTTP {error.code}: {reason}"
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as error:
                reason = getattr(error, "reason", error)
                last = f"{type(error).__name__}: {reason}"
                if isinstance(reason, (socket.timeout, TimeoutError)) or isinstance(
                    error, (socket.timeout, TimeoutError)
                ):
                    last = f"no answer within {self.timeout:g} s (backend.request_timeout_s)"
            if attempt < self.retries:
                time.sleep(min(self.backoff * 2**attempt, 60.0))
        raise BackendUnavailable(
            f"{self.url}: gave up after {self.retries + 1} attempts over "
            f"{time.monotonic() - started:.0f} s; last error: {last}. Is the server running "
            "(backend.base_url), and does it serve backend.model?"
        )

    def generate(
        self,
        prompts: list[Messages],
        seed: int,
        schema: dict | None = None,
        stop: list[str] | None = None,
    ) -> list[str]:
        if not prompts:
            return []
        workers = max(1, min(len(prompts), self.config.batch_size))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(
                pool.map(
                    lambda i: self.complete(prompts[i], seed + i, schema, stop), range(len(prompts))
                )
            )
