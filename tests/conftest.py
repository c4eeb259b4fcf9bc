"""Shared pytest setup: CPU-friendly threading, GPU-test skipping, and the fixtures several test
files use (the tiny training data; a tiny export vLLM loads, and vLLM's OpenAI server on it).
Helpers that are not fixtures live in megatron_agentic/testing/ (benchmarks use them too)."""

import os

import pytest

from megatron_agentic.testing.train_fixtures import make_training_data
from megatron_agentic.testing.vllm import vllm_serve

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (runs when one is present)")
    for item in items:
        # the marker itself: `"gpu" in item.keywords` also matches any directory named gpu
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Overrides pointing the tiny recipe at a small preprocessed 2-dataset blend (per module)."""
    root = tmp_path_factory.mktemp("train_data")
    blend, tokenizer = make_training_data(root)
    return [
        f"data.blend={blend}",
        f"data.tokenizer_model={tokenizer}",
        f"data.cache_dir={root / 'cache'}",
    ]


@pytest.fixture(scope="session")
def vllm_export(tmp_path_factory):
    """A tiny Qwen3-MoE (head_dim 64, as vLLM's CPU attention needs; room for the agent's
    prompt) with a chat template, imported at TP=2/EP=2 and exported back to HF by our
    converter: the checkpoint vLLM loads and serves (one per session: exporting and starting
    a server take minutes on 2 cores)."""
    from megatron_agentic.testing.conversion import convert
    from megatron_agentic.testing.hf_fixtures import make_tiny_hf_model
    from megatron_agentic.testing.vllm import CHAT_TEMPLATE

    root = tmp_path_factory.mktemp("vllm_export")
    hf = make_tiny_hf_model(
        root / "hf", head_dim=64, hidden_size=128, max_position_embeddings=16384
    )
    (hf / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    imported = convert(
        "hf-to-megatron", "--hf-model", hf, "--output", root / "mcore", "--tp", "2", "--ep", "2"
    )
    assert imported == 0
    assert convert("megatron-to-hf", "--input", root / "mcore", "--output", root / "export") == 0
    return root / "export"


@pytest.fixture(scope="session")
def vllm_server(vllm_export, tmp_path_factory):
    """vLLM's OpenAI server on `vllm_export`; its base URL."""
    log = tmp_path_factory.mktemp("vllm_serve") / "vllm_serve.log"
    with vllm_serve(log, "--model", str(vllm_export), "--dtype", "float32") as url:
        yield url
