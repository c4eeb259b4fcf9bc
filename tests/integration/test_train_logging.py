"""Integration test (2 gloo ranks, the trainer's command line under torchrun): what a run logs.

One short run with W&B in offline mode and no TensorBoard directory (W&B used to start only
with one, and to crash on a YAML-text config): the console shows time per iteration, ETA,
consumed samples and tokens, no MFU on CPU (no known peak), no "async save is deprecated" on
synchronous saves, and the per-layer expert load; W&B receives the config as a dict and the
same figures.
"""

from __future__ import annotations

import re

import pytest

from megatron_agentic.testing.train_fixtures import (
    data_overrides,
    read_wandb_offline_run,
    run_trainer,
)

MICRO_TOKENS = 128  # tiny recipe: seq_length 128, global batch 8, top-2 of 4 experts
ASSIGNMENTS_PER_ITER = 8 * MICRO_TOKENS * 2
EXPERTS = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("logging")
    result = run_trainer(
        *data_overrides(root / "data"),
        f"checkpoint.save={root / 'ckpt'}",
        "parallel.ep=2",  # DP=2: the expert load must add both ranks' tokens
        "schedule.train_iters=4",
        "checkpoint.save_interval=2",
        "training.eval_interval=2",
        "logging.log_interval=2",
        "logging.wandb_project=megatron-agentic-test",
        "logging.wandb_run_name=logging-test",
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(root), "WANDB_SILENT": "true"},
    )
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout, root


def test_console_shows_progress_and_no_mfu_on_cpu(run):
    output, _ = run
    steps = re.findall(
        r"iteration +(\d+)/4 \| loss \S+ \| lm loss (\S+) \| .*\| time/iter (\S+) s \| "
        r"ETA (\d+):(\d\d):(\d\d) \| samples ([\d,]+) \| tokens ([\d,]+) \| tokens/s",
        output,
    )
    assert [int(s[0]) for s in steps] == [2, 4], output[-3000:]
    for iteration, _, seconds, *_, samples, tokens in steps:
        assert float(seconds) > 0
        assert int(samples.replace(",", "")) == 8 * int(iteration)
        assert int(tokens.replace(",", "")) == 8 * MICRO_TOKENS * int(iteration)
    assert steps[-1][3:6] == ("0", "00", "00")  # nothing left at the last iteration
    assert "MFU" not in output
    assert "async save is deprecated" not in output
    assert output.count("saved checkpoint at iteration") == 2
    assert re.search(r"validation at iteration 4 \| lm loss \S+ \| ppl \S+", output)


def test_console_shows_expert_load_per_layer(run):
    output, _ = run
    lines = re.findall(r"iteration +(\d) expert load \(tokens per expert\) \| (.*)", output)
    assert [int(i) for i, _ in lines] == [2, 4], output[-3000:]
    for _, text in lines:
        layers = re.findall(r"layer (\d) min (\d+) max (\d+) imbalance (\S+)", text)
        assert [int(x[0]) for x in layers] == [1, 2]
        # 2 iterations since the last log, summed over both data-parallel ranks
        mean = 2 * ASSIGNMENTS_PER_ITER / EXPERTS
        for _, low, high, imbalance in layers:
            assert int(low) <= mean <= int(high)
            assert float(imbalance) == pytest.approx(int(high) / mean, abs=1e-3)


def test_wandb_offline_gets_the_config_as_a_dict_and_the_figures(run):
    output, root = run
    config, history = read_wandb_offline_run(root)
    assert config["optimizer"]["lr"] == pytest.approx(3e-3)
    assert config["parallel"]["ep"] == 2
    by_step = {row["_step"]: row for row in history}
    console = dict(re.findall(r"iteration +(\d+)/4 \| loss \S+ \| lm loss (\S+)", output))
    for step in (2, 4):
        row = by_step[step]
        assert row["lm_loss"] == pytest.approx(float(console[str(step)]), rel=1e-3)
        for key in ("time_per_iter", "ETA", "samples", "tokens", "grad_norm", "lr"):
            assert key in row, (key, sorted(row))
        assert row["expert_load/layer_2/imbalance"] >= 1.0
        assert "MFU" not in row
    assert "validation_lm_loss" in by_step[4]
