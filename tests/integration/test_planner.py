"""The planner's per-rank parameter counts equal megatron-core's own, exactly, for several tiny
shapes and layouts; its memory estimate is consistent; the CLI explains the stage-2 layout."""

from __future__ import annotations

import pytest

from megatron_agentic.model import get_preset
from megatron_agentic.planner import Layout, estimate, params_per_rank, plan
from megatron_agentic.testing.distributed import run_distributed

SHAPES = {
    "tiny": {},
    "wide_gqa": dict(
        num_layers=4,
        hidden_size=96,
        num_attention_heads=6,
        num_query_groups=2,
        head_dim=16,
        num_experts=8,
        moe_router_topk=2,
        moe_ffn_hidden_size=48,
    ),
}


def _megatron_counts(shape: dict, layout: dict) -> tuple[int, int, bool, bool]:
    from megatron.core import parallel_state

    from megatron_agentic import parallel
    from megatron_agentic.model import build_model, transformer_config

    model_cfg = get_preset("tiny", **shape)
    par = parallel.ParallelConfig(**layout)
    parallel.initialize(par)
    chunks = build_model(model_cfg, transformer_config(model_cfg, par), 64)
    dense = sum(p.numel() for c in chunks for n, p in c.named_parameters() if ".experts." not in n)
    expert = sum(p.numel() for c in chunks for n, p in c.named_parameters() if ".experts." in n)
    first = parallel_state.is_pipeline_first_stage(ignore_virtual=True)
    last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    parallel.destroy()
    return dense, expert, first, last


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(
    "layout, ranks",
    [({}, 1), ({"tp": 2, "ep": 2}, 2), ({"pp": 2}, 2)],
    ids=["tp1", "tp2_ep2", "pp2"],
)
def test_parameter_counts_match_megatron_core(shape, layout, ranks):
    model_cfg = get_preset("tiny", **SHAPES[shape])
    for dense, expert, first, last in run_distributed(
        _megatron_counts, ranks, SHAPES[shape], layout
    ):
        ours = params_per_rank(model_cfg, Layout(**layout), first_stage=first, last_stage=last)
        assert ours == (dense, expert)


def test_full_model_count_is_the_published_size():
    total, active = get_preset("qwen3_30b_a3b").num_parameters()
    assert round(total / 1e9, 1) == 30.5 and 3.3 <= active / 1e9 <= 3.4  # Qwen: 30.5B, 3.3B active
    dense, expert = params_per_rank(get_preset("qwen3_30b_a3b"), Layout(), True, True)
    assert dense + expert == total


def test_memory_estimate_is_monotonic_and_the_recipes_fit():
    model = get_preset("qwen3_30b_a3b_128k")
    stage2 = Layout(tp=2, cp=4, pp=4, ep=8)
    base = estimate(model, stage2, 131072, 1, 16, 64)
    assert base.total_gb < 80
    assert (
        estimate(model, Layout(tp=2, cp=2, pp=4, ep=8), 131072, 1, 16, 64).activations_gb
        > base.activations_gb
    )
    assert (
        estimate(
            model, Layout(tp=2, cp=4, pp=4, ep=8, recompute="none"), 131072, 1, 16, 64
        ).activations_gb
        > base.activations_gb
    )
    fits = plan(get_preset("qwen3_30b_a3b"), 32768, 1, 64, 80, nodes=4)
    assert fits and all(e.total_gb <= 80 for e in fits)
    assert not plan(get_preset("qwen3_30b_a3b_128k"), 131072, 1, 16, 16, nodes=1)


def test_cli_explains_a_layout(capsys):
    from tools.plan_parallelism import main

    assert (
        main(
            [
                "--preset",
                "qwen3_30b_a3b_128k",
                "--seq-length",
                "131072",
                "--global-batch",
                "16",
                "--nodes",
                "8",
                "--layout",
                "tp=2,cp=4,pp=4,ep=8",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "TP=2 PP=4 VPP=1 CP=4 EP=8" in out and "fits in 80 GB" in out
