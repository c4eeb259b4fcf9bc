"""LLM backends on real parts. Unit (seconds): the OpenAI-compatible backend against real local
HTTP servers (dead port, a server that never answers, a flaky one, a 400), the transformers
backend constraining a random tiny Qwen3 to a JSON schema with xgrammar, Qwen3's thinking mode off
through the chat template. Integration (minutes, skipped without the model folder that
scripts/get_smollm2.sh makes): SmolLM2-135M-Instruct end to end through every FAS stage, with the
transformers backend here and with vLLM's CPU build in .venv-vllm, constrained JSON; every stage
runs and its counts are recorded (the model is weak: the point is the real path, not the yield).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch

from data_synthesis.config import BackendConfig
from data_synthesis.llm import chat_template_kwargs
from data_synthesis.llm.json_task import object_schema
from data_synthesis.llm.openai_backend import BackendUnavailable, OpenAICompatibleBackend
from megatron_agentic.local_ranks import free_port
from megatron_agentic.testing.vllm import VLLM_PYTHON, needs_vllm

REPO = Path(__file__).resolve().parents[2]
SMOLLM = Path(os.environ.get("SMOLLM2_HF_DIR", REPO / ".cache" / "smollm2-135m-instruct-hf"))
MESSAGES = [{"role": "user", "content": "Name a river."}]

# --- openai backend: retries, timeouts, the URL in every message ------------------------------


def openai_backend(url: str, **overrides) -> OpenAICompatibleBackend:
    config = BackendConfig(type="openai", model="m", base_url=url, max_tokens=8)
    for key, value in {
        "request_timeout_s": 0.5,
        "request_retries": 2,
        "retry_backoff_s": 0.05,
        **overrides,
    }.items():
        setattr(config, key, value)
    return OpenAICompatibleBackend(config)


def test_openai_dead_url_retries_then_gives_up_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1.*gave up after 3 attempts") as err:
        openai_backend(url).generate([MESSAGES], seed=0)
    assert "Connection refused" in str(err.value) or "URLError" in str(err.value)
    assert time.monotonic() - started < 10


def test_openai_server_that_never_answers_times_out():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # accepts connections, never replies
    url = f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable, match=r"no answer within 0\.5 s") as err:
            openai_backend(url, request_retries=1).generate([MESSAGES], seed=0)
        assert url in str(err.value)
        assert time.monotonic() - started < 5  # 2 attempts x 0.5 s, not 600 s
    finally:
        server.close()


class FlakyServer(BaseHTTPRequestHandler):
    """503 for the first request, then a chat completion echoing what it was sent."""

    calls: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FlakyServer.calls.append(body)
        if body["messages"][0]["content"] == "bad":
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b"unknown model")
            return
        if len(FlakyServer.calls) == 1:
            self.send_response(503)
            self.end_headers()
            return
        reply = {"choices": [{"message": {"content": '{"answer": "Danube"}'}}]}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(reply).encode())

    def log_message(self, *args):
        pass


def test_openai_retries_a_503_sends_the_schema_and_fails_fast_on_400():
    server = HTTPServer(("127.0.0.1", 0), FlakyServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        schema = object_schema({"answer": {"type": "string"}})
        backend = openai_backend(url)
        assert backend.generate([MESSAGES], seed=3, schema=schema) == ['{"answer": "Danube"}']
        sent = FlakyServer.calls[-1]
        assert len(FlakyServer.calls) == 2  # the 503 was retried
        assert sent["response_format"]["json_schema"]["schema"] == schema
        assert sent["chat_template_kwargs"] == {"enable_thinking": False} and sent["seed"] == 3
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"answered HTTP 400: unknown model"):
            backend.generate([[{"role": "user", "content": "bad"}]], seed=0)
        assert time.monotonic() - started < 1  # no retries for a client error
    finally:
        server.shutdown()


# --- transformers backend: constrained JSON from a random model; thinking off -----------------


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from megatron_agentic.testing.data_fixtures import make_tokenizer

    directory = tmp_path_factory.mktemp("qwen3") / "tiny"
    make_tokenizer(directory, vocab_size=300)
    torch.manual_seed(0)
    Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=300,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=64,
            max_position_embeddings=4096,
        )
    ).save_pretrained(directory)
    return directory


def test_transformers_backend_constrains_a_random_model_to_the_schema(tiny_qwen3):
    from data_synthesis.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(
        BackendConfig(type="transformers", model=str(tiny_qwen3), max_tokens=60, temperature=1.0)
    )
    assert backend.constrained
    schema = object_schema({"verdict": {"enum": ["progress", "no_progress"]}})
    replies = backend.generate([MESSAGES, MESSAGES, MESSAGES], seed=0, schema=schema)
    for reply in replies:  # random weights, yet each reply is the schema's JSON
        assert json.loads(reply)["verdict"] in ("progress", "no_progress")
    free = backend.generate([MESSAGES], seed=0)[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(free)  # unconstrained, the same model writes noise


def test_thinking_mode_is_off_through_the_qwen3_chat_template():
    from transformers import AutoTokenizer

    from megatron_agentic.testing.data_fixtures import qwen3_tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    kwargs = chat_template_kwargs(BackendConfig(type="transformers"))
    text = tokenizer.apply_chat_template(
        MESSAGES, tokenize=False, add_generation_prompt=True, **kwargs
    )
    assert text.endswith("<think>\n\n</think>\n\n")  # an empty thinking block: no thinking
    thinking = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert not thinking.endswith("</think>\n\n")


# --- SmolLM2-135M-Instruct end to end ---------------------------------------------------------

needs_smollm = pytest.mark.skipif(
    not (SMOLLM / "config.json").exists(), reason="no SmolLM2 folder: bash scripts/get_smollm2.sh"
)
DOCS = [
    {
        "id": "d1",
        "title": "Vienna",
        "text": "Vienna is the capital of Austria. Vienna lies on "
        "the Danube. Vienna has a population of about 2 million.",
    },
    {
        "id": "d2",
        "title": "Danube",
        "text": "The Danube is a river about 2,850 kilometres long. "
        "The Danube flows into the Black Sea.",
    },
]


def smollm_inputs(tmp_path: Path, backend_lines: str) -> tuple[Path, Path]:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"plans_per_question: 2\nbackend:\n{backend_lines}  model: {SMOLLM}\n  max_tokens: 64\n"
        "  max_retries: 0\n  temperature: 0.7\n"
        "questions:\n  per_entity: 1\n  styles: [factual]\n"
    )
    return docs, config


def check_every_stage_ran(summary: dict) -> None:
    counts, rejects = summary["counters"]["counts"], summary["counters"]["rejects"]
    for stage in ("extract", "questions", "planning", "reasoning"):
        assert counts.get(stage, {}).get("llm calls", 0) > 0, (stage, summary["counters"])
    # every LLM call ended in an output or a counted reason
    assert summary["documents"] == 2 and counts["extract"]["documents"] == 2
    total_rejects = sum(sum(r.values()) for r in rejects.values())
    outputs = summary["statements"] + summary["planning_documents"] + summary["reasoning_documents"]
    assert total_rejects + outputs > 0


@needs_smollm
def test_smollm2_through_every_stage_with_transformers(tmp_path):
    from scripts.synthesis_method_report import main

    docs, config = smollm_inputs(tmp_path, "  type: transformers\n")
    out = tmp_path / "summary.json"
    torch.set_num_threads(1)
    argv = ["--input", str(docs), "--config", str(config), "--fallback", "baseline"]
    assert main([*argv, "--json", str(out), "--samples", "1"]) == 0
    check_every_stage_ran(json.loads(out.read_text()))


@needs_smollm
@needs_vllm
def test_smollm2_through_every_stage_with_vllm_cpu(tmp_path):
    from scripts.synthesis_method_report import main

    docs, config = smollm_inputs(
        tmp_path, "  type: vllm\n  dtype: bfloat16\n  max_model_len: 4096\n"
    )
    baseline = tmp_path / "baseline.json"
    assert (
        main(["--input", str(docs), "--config", str(config), "--write-baseline", str(baseline)])
        == 0
    )
    out = tmp_path / "summary.json"
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [
            str(VLLM_PYTHON),
            "scripts/synthesis_method_report.py",
            "--input",
            str(docs),
            "--config",
            str(config),
            "--fallback",
            str(baseline),
            "--json",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    check_every_stage_ran(json.loads(out.read_text()))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
