"""Shared pytest setup: CPU-friendly threading and GPU-test skipping."""

import os

import pytest

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
