"""GPU-only checks, skipped without CUDA (conftest): on 2 GPUs with TransformerEngine, context
parallelism must not change the loss (Megatron-Bridge #2055; ms-swift #4144 crashed with CP>1).

Run on a GPU machine: `pytest -m gpu tests/gpu/test_gpu.py`.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from megatron_agentic.testing.train_fixtures import train_losses

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        torch.cuda.device_count() < 2 or importlib.util.find_spec("transformer_engine") is None,
        reason="needs 2 GPUs and TransformerEngine",
    ),
]

STAGE2_SHAPED = [
    "model.preset=tiny_128k",
    "data.seq_length=512",
    "optimizer.bf16=true",
    "schedule.train_iters=3",
    "parallel.tp=1",
]


def test_context_parallel_keeps_the_loss(data, tmp_path):  # noqa: F811
    # Same weights (seed) and global batch: CP=2 splits each sequence over the 2 GPUs, CP=1 gives
    # them one sequence each (DP=2). TE's attention runs in bf16, hence the tolerance.
    cp1 = train_losses(data, tmp_path / "cp1", *STAGE2_SHAPED, "parallel.cp=1")
    cp2 = train_losses(data, tmp_path / "cp2", *STAGE2_SHAPED, "parallel.cp=2")
    assert cp2 == pytest.approx(cp1, rel=2e-2)
