"""The trainer on 2 gloo ranks: loss falls, resume is exact, resharding keeps the optimizer state.

All runs train the tiny recipe on a dataset made by tools/preprocess_data.py. Resume tests stop a
run, resume it, and compare the losses of SEVERAL steps after the resume with a run that never
stopped: a wrong optimizer state (e.g. megatron-core's shared Adam `step` after loading) only shows
a few steps later.
"""

from __future__ import annotations

import pytest

from megatron_agentic.testing.train_fixtures import train_losses


def test_tiny_recipe_loss_falls(data, tmp_path):
    losses = train_losses(data, tmp_path / "run", "parallel.tp=2", "schedule.train_iters=24")
    assert len(losses) == 24
    assert losses[-1] < losses[0] - 1.0, losses
    assert (tmp_path / "run" / "latest_checkpointed_iteration.txt").read_text().strip() == "24"


@pytest.mark.parametrize("layout", [["parallel.ep=2"], ["parallel.tp=2"]], ids=["ep2", "tp2"])
def test_resume_is_exact(data, tmp_path, layout):
    common = [*layout, "schedule.train_iters=12", "checkpoint.save_interval=100"]
    straight = train_losses(data, tmp_path / "straight", *common)
    first = train_losses(data, tmp_path / "stopped", *common, "training.exit_interval=6")
    resumed = train_losses(data, tmp_path / "stopped", *common)
    assert len(first) == 6 and len(resumed) == 6
    assert first + resumed == pytest.approx(straight, rel=1e-5, abs=1e-6)


def test_resume_under_another_layout_keeps_optimizer_state(data, tmp_path):
    """Saved at TP=2 (DP=1; experts data-parallel over 2), resumed at TP=1 with EP=2 (DP=2;
    experts split over 2): every tensor, and the distributed-optimizer state, is resharded."""
    common = ["schedule.train_iters=12", "checkpoint.save_interval=100"]
    straight = train_losses(data, tmp_path / "straight", "parallel.tp=2", *common)
    first = train_losses(
        data, tmp_path / "moved", "parallel.tp=2", *common, "training.exit_interval=6"
    )
    resumed = train_losses(data, tmp_path / "moved", "parallel.tp=1", "parallel.ep=2", *common)
    assert first + resumed == pytest.approx(straight, rel=2e-5, abs=1e-5)


def test_async_save_resumes_exactly(data, tmp_path):
    """checkpoint.async_save: the iteration-4 checkpoint, written by a background process while
    iterations 5-6 train, is published on its own and resumes like a run that never stopped."""
    from megatron_agentic.checkpointing import write_latest

    common = ["parallel.ep=2", "schedule.train_iters=10"]
    straight = train_losses(data, tmp_path / "straight", *common, "checkpoint.save_interval=100")
    save = tmp_path / "async"
    first = train_losses(
        data,
        save,
        *common,
        "checkpoint.save_interval=4",
        "checkpoint.async_save=true",
        "training.exit_interval=6",
    )
    assert sorted(p.name for p in save.iterdir() if "iter_" in p.name) == [
        "iter_0000004",
        "iter_0000006",
    ]
    write_latest(save, 4)
    resumed = train_losses(data, save, *common, "checkpoint.save_interval=100")
    assert len(first) == 6 and len(resumed) == 6
    assert first[:4] + resumed == pytest.approx(straight, rel=1e-5, abs=1e-6)
