"""Context parallelism on CPU (integration: real gloo ranks).

- `ContextParallelAttention` on 2 CP ranks against full causal attention computed on one rank:
  outputs and the gradients of Q, K and V (K/V gradients come back through the all-gather's
  reduce-scatter), with and without a document mask.
- The tiny stage-2 recipe trains with cp=2, and a run saved at CP=2 resumes at CP=1 (DP=2) with
  the losses of a run that never stopped.
(CP=2 and CP=2 x TP=2 against one rank on the full model: tests/integration/test_parallel_equivalence.py.)
"""

from __future__ import annotations

import math

import pytest
import torch

from megatron_agentic.testing.distributed import run_distributed
from megatron_agentic.testing.train_fixtures import train_losses

SEQ, BATCH, HEADS, GROUPS, DIM = 16, 2, 4, 2, 8


def _inputs():
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(SEQ, BATCH, HEADS, DIM, generator=generator, dtype=torch.float64)
    k = torch.randn(SEQ, BATCH, GROUPS, DIM, generator=generator, dtype=torch.float64)
    v = torch.randn(SEQ, BATCH, GROUPS, DIM, generator=generator, dtype=torch.float64)
    grad_out = torch.randn(SEQ, BATCH, HEADS * DIM, generator=generator, dtype=torch.float64)
    # two documents per row, split at different places: True = masked (megatron's convention)
    doc = torch.zeros(BATCH, SEQ, dtype=torch.long)
    doc[0, 5:] = 1
    doc[1, 11:] = 1
    mask = (doc[:, None, :, None] != doc[:, None, None, :]) | torch.ones(SEQ, SEQ).triu(1).bool()
    return q, k, v, grad_out, mask


def _reference(q, k, v, grad_out, mask):
    """Textbook attention on the whole sequence: softmax(QK^T/sqrt(d) + mask) V."""
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    kk = k.repeat_interleave(HEADS // GROUPS, dim=2)
    vv = v.repeat_interleave(HEADS // GROUPS, dim=2)
    scores = torch.einsum("sbhd,tbhd->bhst", q, kk) / math.sqrt(DIM)
    scores = scores.masked_fill(mask, float("-inf"))
    out = torch.einsum("bhst,tbhd->sbhd", scores.softmax(-1), vv).reshape(SEQ, BATCH, -1)
    out.backward(grad_out)
    return out.detach(), q.grad, k.grad, v.grad


def _zigzag(tensor, cp, rank, dim=0):
    chunks = tensor.chunk(2 * cp, dim=dim)
    return torch.cat([chunks[rank], chunks[2 * cp - 1 - rank]], dim=dim)


def _cp_attention_on_rank(with_mask: bool):
    from megatron.core import parallel_state
    from megatron.core.transformer import TransformerConfig

    from megatron_agentic import cpu_runtime
    from megatron_agentic.cp_attention import ContextParallelAttention

    cpu_runtime.install()
    torch.distributed.init_process_group("gloo")
    parallel_state.initialize_model_parallel(context_parallel_size=2)
    config = TransformerConfig(
        num_layers=1,
        hidden_size=HEADS * DIM,
        num_attention_heads=HEADS,
        num_query_groups=GROUPS,
        kv_channels=DIM,
        context_parallel_size=2,
        attention_dropout=0.0,
    )
    attention = ContextParallelAttention(config, 1, None, "self")
    q, k, v, grad_out, mask = _inputs()
    rank = parallel_state.get_context_parallel_rank()
    local = [_zigzag(t, 2, rank).requires_grad_() for t in (q, k, v)]
    local_mask = (
        _zigzag(mask, 2, rank, dim=2) if with_mask else None
    )  # as get_batch_on_this_cp_rank
    out = attention(*local, local_mask)
    out.backward(_zigzag(grad_out, 2, rank))
    expected = _reference(q, k, v, grad_out, mask if with_mask else mask.new_ones(SEQ, SEQ).triu(1))
    parallel_state.destroy_model_parallel()
    pairs = [(out.detach(), _zigzag(expected[0], 2, rank))]
    pairs += [(t.grad, _zigzag(g, 2, rank)) for t, g in zip(local, expected[1:])]
    return [float((a - b).abs().max()) for a, b in pairs]


@pytest.mark.parametrize("with_mask", [False, True], ids=["causal", "documents"])
def test_cp_attention_equals_full_attention(with_mask):
    for rank, errors in enumerate(run_distributed(_cp_attention_on_rank, 2, with_mask)):
        # [output, dQ, dK, dV]: float64, so only rounding remains
        assert max(errors) < 1e-12, f"rank {rank}: max |error| of out, dQ, dK, dV = {errors}"


STAGE2 = "examples/recipes/tiny_stage2.yaml"


def test_tiny_stage2_recipe_trains_with_cp2(data, tmp_path):  # noqa: F811
    losses = train_losses(data, tmp_path / "run", "parallel.cp=2", "parallel.tp=1", recipe=STAGE2)
    assert len(losses) == 10 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0] - 0.5, losses


def test_resume_at_another_cp_size(data, tmp_path):  # noqa: F811
    """Saved at CP=2 (DP=1), resumed at CP=1 (DP=2): same losses as a CP=2 run that never stopped
    (every micro-batch holds the same number of loss tokens, so the gradient averages agree)."""
    common = ["parallel.tp=1", "schedule.train_iters=6"]
    common += ["checkpoint.save_interval=100", "checkpoint.load_optimizer=true"]
    straight = train_losses(data, tmp_path / "straight", *common, "parallel.cp=2", recipe=STAGE2)
    first = train_losses(
        data,
        tmp_path / "moved",
        *common,
        "parallel.cp=2",
        "training.exit_interval=3",
        recipe=STAGE2,
    )
    resumed = train_losses(data, tmp_path / "moved", *common, "parallel.cp=1", recipe=STAGE2)
    assert len(first) == 3 and len(resumed) == 3
    assert first + resumed == pytest.approx(straight, rel=2e-5, abs=1e-5)
