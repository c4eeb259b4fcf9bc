"""Trainer failures users hit elsewhere: bad configs, divergence, dead/stalled ranks, kill -9 mid-save."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megatron_agentic.checkpoint_files import LATEST, iteration_dir, read_latest
from megatron_agentic.testing.distributed import free_port, run_distributed
from megatron_agentic.testing.train_fixtures import RECIPE, data_overrides
from megatron_agentic.testing.train_fixtures import train_in_process as _train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return data_overrides(tmp_path_factory.mktemp("train_data"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lrr=1", "unknown key optimizer.lrr"),
        ("parallel.tp=two", "parallel.tp: expected an integer, got 'two'"),
        ("optimizer.bf16=maybe", "optimizer.bf16: expected true/false"),
        ("trainer.steps=3", "unknown key trainer; known: checkpoint, data"),
        ("model.preset=llama", "model.preset: unknown model preset 'llama'"),
        ("parallel.ep=3", "num_experts=4 is not divisible by ep=3"),
        ("justtext", "override 'justtext' is not key.sub=value"),
    ],
)
def test_bad_config_fails_before_any_process_group(override, message, capsys):
    import torch

    from megatron_agentic.train import main

    assert main(["--config", RECIPE, "data.blend=x.yaml", "data.tokenizer_model=t", override]) == 2
    assert message in capsys.readouterr().err
    assert not torch.distributed.is_initialized()


def test_bad_yaml_is_named(tmp_path, capsys):
    from megatron_agentic.train import main

    recipe = tmp_path / "broken.yaml"
    recipe.write_text("model: [unclosed\n")
    assert main(["--config", str(recipe)]) == 2
    assert f"{recipe}: not valid YAML" in capsys.readouterr().err


def test_divergence_stops_with_step_named_and_keeps_last_good_checkpoint(data, tmp_path):
    save = tmp_path / "ckpt"
    argv = [
        *data,
        f"checkpoint.save={save}",
        "checkpoint.save_interval=1",
        "optimizer.lr=1e30",
        "schedule.warmup_iters=0",
        "optimizer.clip_grad=0.0",
        "training.eval_interval=0",
    ]
    with pytest.raises(RuntimeError, match="TrainingDiverged") as error:
        run_distributed(_train, 2, argv, timeout=300)
    found = re.search(r"iteration (\d+): lm loss (\S+), grad norm (\S+);", str(error.value))
    assert {"nan", "inf"} & {found.group(2).strip(","), found.group(3)}, found.group(0)
    diverged = int(found.group(1))
    assert diverged >= 2  # step 1's loss is computed before the first (destructive) update
    assert read_latest(save) == diverged - 1
    assert iteration_dir(save, diverged - 1).is_dir()
    assert not list(save.glob(".*partial"))


def _dead_or_stalled_peer(mode: str) -> tuple[str, float]:
    """Rank 1 leaves (or sleeps past the 3-second timeout) while rank 0 waits in all_reduce."""
    import torch

    from megatron_agentic import parallel

    parallel.initialize(parallel.ParallelConfig(distributed_timeout_minutes=0.05))
    if torch.distributed.get_rank() == 1:
        if mode == "stalls":
            time.sleep(8)
        return mode, 0.0  # "dies": the process tears down its connections and exits
    start = time.perf_counter()
    try:
        for _ in range(3):
            torch.distributed.all_reduce(torch.ones(1))
    except Exception as error:  # noqa: BLE001 - the error is what we measure
        return type(error).__name__, time.perf_counter() - start
    return "no error", time.perf_counter() - start


@pytest.mark.parametrize("mode", ["dies", "stalls"])
def test_lost_rank_fails_the_job_within_the_timeout(mode):
    (error, seconds), _ = run_distributed(_dead_or_stalled_peer, 2, mode, timeout=60)
    assert error != "no error"
    assert seconds < 6.0, f"rank 0 waited {seconds:.1f} s with a timeout of 3 s"


def _launch(data_args, save: Path, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        "-m",
        "megatron_agentic.train",
        "--config",
        RECIPE,
        *data_args,
        f"checkpoint.save={save}",
        "training.eval_interval=0",
        "schedule.train_iters=8",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=env,
    )


def _kill_tree(run: subprocess.Popen) -> None:
    """SIGKILL torchrun and every worker (they run in process groups of their own)."""
    import psutil

    processes = [psutil.Process(run.pid)]
    try:
        processes += processes[0].children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    run.wait()
    psutil.wait_procs(processes, timeout=10)


def _lm_losses(output: str) -> dict[int, float]:
    return {
        int(m.group(1)): float(m.group(2))
        for m in re.finditer(r"iteration +(\d+)/\d+ \| loss \S+ \| lm loss (\S+)", output)
    }


def test_kill_9_during_checkpoint_save_then_rerun_equals_uninterrupted(data, tmp_path):
    straight = _launch(data, tmp_path / "straight", "checkpoint.save_interval=100")
    output = straight.communicate(timeout=300)[0]
    expected = _lm_losses(output)
    assert sorted(expected) == list(range(1, 9)), output[-3000:]

    save = tmp_path / "killed"
    for _attempt in range(5):  # the kill must land inside a save, before the last one completes
        shutil.rmtree(save, ignore_errors=True)
        run = _launch(data, save, "checkpoint.save_interval=1")
        while not list(save.glob(".iter_*.partial")) and run.poll() is None:
            time.sleep(0.001)
        _kill_tree(run)
        latest = read_latest(save)
        if latest != 8:
            break
    assert latest != 8, "could not interrupt a save"
    # Only ever a finished checkpoint (or none) is named; the interrupted save stays a .partial.
    assert latest is None or (iteration_dir(save, latest) / "run_config.yaml").is_file()
    assert list(save.glob(".iter_*.partial"))

    rerun = _launch(data, save, "checkpoint.save_interval=1")
    output = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, output[-3000:]
    resumed = _lm_losses(output)
    assert resumed and max(resumed) == 8, output[-3000:]
    for step, loss in resumed.items():
        assert loss == pytest.approx(expected[step], rel=1e-5), step
    assert (save / LATEST).read_text().strip() == "8"
