"""launch/pretrain_stage{1,2}.sh run the tiny recipes end to end on CPU, both starting torchrun
themselves and started by torchrun (`--no-python`); the SLURM script requeues on preemption and
resumes; and the full-scale recipes are valid."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from megatron_agentic.config import load_config
from megatron_agentic.parallel import validate_layout
from tests.distributed import free_port
from tests.train_fixtures import make_training_data


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("launch")
    blend, tokenizer = make_training_data(root)
    return {
        **os.environ,
        "CPU": "1",
        "DATA_BLEND": str(blend),
        "TOKENIZER": str(tokenizer),
        "MASTER_PORT": str(free_port()),
        "PYTHON": sys.executable,
    }


def test_stage_scripts_start_torchrun_themselves(env, tmp_path):
    stage1 = {**env, "CKPT_DIR": str(tmp_path / "s1")}
    subprocess.run(
        [
            "bash",
            "launch/pretrain_stage1.sh",
            "schedule.train_iters=3",
            "schedule.warmup_iters=1",
            "training.eval_interval=0",
        ],
        env=stage1,
        check=True,
    )
    stage2 = {
        **env,
        "CKPT_DIR": str(tmp_path / "s2"),
        "LOAD_DIR": str(tmp_path / "s1"),
        "MASTER_PORT": str(free_port()),
    }
    result = subprocess.run(
        [
            "bash",
            "launch/pretrain_stage2.sh",
            "schedule.train_iters=3",
            "schedule.warmup_iters=0",
            "schedule.wsd_decay_iters=1",
            "training.eval_interval=0",
        ],
        env=stage2,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"loaded {tmp_path / 's1'}" in result.stdout
    assert (tmp_path / "s2" / "latest_checkpointed_iteration.txt").read_text().strip() == "3"


def test_stage_script_under_torchrun_no_python(env, tmp_path):
    run = {**env, "CKPT_DIR": str(tmp_path / "ckpt")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(free_port()),
            "--no-python",
            "bash",
            "launch/pretrain_stage1.sh",
            "schedule.train_iters=2",
            "schedule.warmup_iters=1",
            "training.eval_interval=0",
        ],
        env=run,
        check=True,
    )
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"


@pytest.mark.parametrize(
    "recipe, world_size",
    [
        ("examples/recipes/stage1_qwen3_30b_a3b.yaml", 32),
        ("examples/recipes/stage2_qwen3_30b_a3b_128k.yaml", 64),
    ],
)
def test_full_scale_recipes_are_valid_layouts(recipe, world_size):
    config = load_config(recipe)
    assert config.model.num_layers == 48 and config.model.num_experts == 128
    assert validate_layout(config.model, config.parallel, world_size, config.data.seq_length) >= 1


def _fake_slurm_commands(bin_dir, requeue_log):
    """`srun` runs its command here (one node); `scontrol` names this host and records requeues."""
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n'
    )
    (bin_dir / "scontrol").write_text(
        '#!/usr/bin/env bash\ncase "$1" in\n  show) echo localhost ;;\n'
        f'  requeue) echo "$2" >> {requeue_log} ;;\nesac\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)


def test_slurm_job_requeues_on_preemption_and_resumes(env, tmp_path):
    """The sbatch script on one 'node': SIGUSR1 (what --signal=B:USR1 sends) makes the trainer
    save and exit and the job requeue itself; the requeued job resumes from that checkpoint."""
    _fake_slurm_commands(tmp_path / "bin", tmp_path / "requeued")
    job = {
        **env,
        "PATH": f"{tmp_path / 'bin'}:{env['PATH']}",
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_SUBMIT_DIR": os.getcwd(),
        "STAGE": "1",
        "NPROC_PER_NODE": "2",
        "CKPT_DIR": str(tmp_path / "ckpt"),
    }
    args = [
        "schedule.train_iters=1000",
        "schedule.warmup_iters=1",
        "training.eval_interval=0",
        "checkpoint.save_interval=1000",
    ]
    log = tmp_path / "job.log"
    with open(log, "w") as out:
        first = subprocess.Popen(
            ["bash", "launch/slurm/pretrain.sbatch", *args],
            env=job,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 240
        while "iteration      3/1000" not in log.read_text():
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        first.send_signal(signal.SIGUSR1)
        assert first.wait(timeout=240) == 0, log.read_text()[-3000:]
    output = log.read_text()
    stopped = int(re.search(r"stopping at iteration (\d+) \(signal\)", output).group(1))
    assert (tmp_path / "requeued").read_text().split() == ["42"]
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text().strip() == str(
        stopped
    )

    job["MASTER_PORT"] = str(free_port())
    again = subprocess.run(
        ["bash", "launch/slurm/pretrain.sbatch", *args, f"training.exit_interval={stopped + 2}"],
        env=job,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resumed {tmp_path / 'ckpt'} at iteration {stopped}" in again.stdout
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text().strip() == str(
        stopped + 2
    )
