"""The full-scale recipes run the planner's best layout for their GPUs (unit, seconds).

Each recipe states its node count (H100 80GB, 8 GPUs a node); its layout must fit in the memory
the planner allows (10% margin) and score within 5% of the planner's best layout for that many
nodes - so that a change to the planner or to a recipe that leaves the recipe behind fails here.
"""

from __future__ import annotations

import pytest

from megatron_agentic.config import load_config
from megatron_agentic.planner import DEFAULT_SAFETY_MARGIN, estimate, layout_of, plan

GPU_MEMORY_GB = 80.0


@pytest.mark.parametrize(
    "recipe, nodes",
    [
        ("examples/recipes/stage1_qwen3_30b_a3b.yaml", 4),
        ("examples/recipes/stage2_qwen3_30b_a3b_128k.yaml", 8),
    ],
)
def test_recipe_layout_is_within_5_percent_of_the_planners_best(recipe, nodes):
    config = load_config(recipe)
    data = config.data
    args = (config.model, data.seq_length, data.micro_batch_size, data.global_batch_size)
    best = plan(*args, GPU_MEMORY_GB, nodes)[0]
    ours = estimate(
        config.model,
        layout_of(config.parallel, config.training),
        data.seq_length,
        data.micro_batch_size,
        data.global_batch_size,
        nodes * 8,
    )
    assert ours.total_gb <= GPU_MEMORY_GB * (1 - DEFAULT_SAFETY_MARGIN), ours
    assert ours.relative_step_time <= 1.05 * best.relative_step_time, (
        f"{recipe}: {ours.layout} scores {ours.relative_step_time:.2f}, the planner's best "
        f"{best.layout} {best.relative_step_time:.2f}"
    )


def test_selective_recompute_sits_between_none_and_full():
    from megatron_agentic.model import get_preset
    from megatron_agentic.planner import Layout

    model = get_preset("qwen3_30b_a3b")
    base = dict(tp=1, cp=8, pp=2, vpp=2, ep=8)

    def figures(**recompute):
        e = estimate(model, Layout(**base, **recompute), 32768, 1, 64, 32)
        return e.activations_gb, e.relative_step_time

    none, full = figures(recompute="none"), figures(recompute="full")
    act = figures(recompute="selective", recompute_modules=("moe_act",))
    moe = figures(recompute="selective", recompute_modules=("moe",))
    # memory falls and time rises from none through moe_act and moe to full
    assert none[0] > act[0] > moe[0] > full[0]
    assert none[1] < act[1] < moe[1] < full[1]
    with pytest.raises(ValueError, match="recompute_modules"):
        Layout(recompute="selective")
    with pytest.raises(ValueError, match="recompute_modules"):
        Layout(recompute="selective", recompute_modules=("mlp",))
