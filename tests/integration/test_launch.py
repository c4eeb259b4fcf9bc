"""Integration tests (multi-process, end to end on CPU) of launch/: pretrain_stage{1,2}.sh run the
tiny recipes starting torchrun themselves, started by torchrun (with and without `--no-python`),
and refuse a bad config in one line before any worker starts; the preemption save completes
whichever process gets SIGTERM or SIGUSR1, also after a periodic save and with a save slower than
torchrun's default shutdown timeout, and a lost save is reported as a failure; the SLURM script
requeues only over a finished save and resumes, and its log goes where SLURM can open it; and
the full-scale recipes are valid."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from megatron_agentic.config import load_config
from megatron_agentic.parallel import validate_layout
from megatron_agentic.testing.distributed import free_port
from megatron_agentic.testing.train_fixtures import make_training_data


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


def _latest(ckpt) -> int | None:
    marker = ckpt / "latest_checkpointed_iteration.txt"
    return int(marker.read_text()) if marker.is_file() else None


def _wait_until(proc, done, failure, timeout: float = 300):
    """Polls done() until true; fails with failure() once `proc` has ended or time is up."""
    deadline = time.monotonic() + timeout
    while not done():
        assert proc.poll() is None and time.monotonic() < deadline, failure()
        time.sleep(0.2)


def _wait_for_save(proc, log, ckpt, iteration: int = 2):
    """Until `ckpt` holds a published checkpoint at `iteration` or later (a periodic save)."""
    _wait_until(proc, lambda: (_latest(ckpt) or 0) >= iteration, lambda: log.read_text()[-3000:])


def _wait_for_iteration(proc, log, iteration: int):
    """Until the log shows `iteration` trained: a signal sent then must end in a new save (sent
    just after the periodic save, the loop may stop at the iteration already saved)."""
    done = re.compile(rf"^\s*iteration\s+{iteration}\b", re.M)
    _wait_until(proc, lambda: done.search(log.read_text()), lambda: log.read_text()[-3000:])


def _stopped_at(output: str) -> int:
    return int(re.search(r"stopping at iteration (\d+) \(signal\)", output).group(1))


def _assert_preemption_saved(ckpt, output: str) -> int:
    """The save after the signal is published: latest names the iteration the loop stopped at,
    after the periodic save, and no half-written directory is left."""
    stopped = _stopped_at(output)
    assert stopped > 2, output[-3000:]
    assert _latest(ckpt) == stopped, output[-3000:]
    assert not list(ckpt.glob(".iter_*.partial")), output[-3000:]
    return stopped


def _processes(launcher: subprocess.Popen, target: str) -> list[psutil.Process]:
    """The processes a signal goes to: the launch script, torchrun, or every process of the run."""
    root = psutil.Process(launcher.pid)
    if target == "launcher":
        return [root]
    if target == "torchrun":
        candidates = [root, *root.children()]  # a launch script may also exec torchrun
        return [p for p in candidates if "torch.distributed.run" in " ".join(p.cmdline())]
    return [root, *root.children(recursive=True)]


LONG_RUN = [
    "schedule.train_iters=1000",
    "schedule.warmup_iters=1",
    "training.eval_interval=0",
    "checkpoint.save_interval=2",
]


@pytest.mark.parametrize(
    "sig, target",
    [
        (signal.SIGTERM, "torchrun"),
        (signal.SIGTERM, "all"),
        (signal.SIGUSR1, "launcher"),
        (signal.SIGUSR1, "torchrun"),
    ],
    ids=["TERM-torchrun", "TERM-all", "USR1-launcher", "USR1-torchrun"],
)
def test_preemption_save_completes(env, tmp_path, sig, target):
    """After a periodic save (which starts megatron-core's checkpoint-writer helper process), a
    stop signal to any of the run's processes ends in a published save and exit status 0.

    Sent to torchrun, the signal reaches each worker's whole process group, and torchrun kills
    the workers after its shutdown timeout: there the save is made slower (8 s, in os.replace of
    the finished save) than the timeout torchrun would otherwise use (3 s here), so the test
    also proves that launch/common.sh passes torchrun a timeout that covers a save."""
    ckpt = tmp_path / "ckpt"
    run = {**env, "CKPT_DIR": str(ckpt), "MASTER_PORT": str(free_port())}
    if target == "torchrun":
        hooks = tmp_path / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(SLOW_PUBLISH)
        run["PYTHONPATH"] = f"{hooks}:{env.get('PYTHONPATH', '')}"
        run["SLOW_PUBLISH_SECONDS"] = "8"
        run["SLOW_PUBLISH_AFTER"] = "2"
        run["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] = "3"
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        launcher = subprocess.Popen(
            ["bash", "launch/pretrain_stage1.sh", *LONG_RUN],
            env=run,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_save(launcher, log, ckpt)
            _wait_for_iteration(launcher, log, 3)
            targets = _processes(launcher, target)
            assert targets
            for process in targets:
                process.send_signal(sig)
            status = launcher.wait(timeout=300)
        finally:
            if launcher.poll() is None:
                launcher.kill()
    assert status == 0, log.read_text()[-3000:]
    _assert_preemption_saved(ckpt, log.read_text())


# Fault injection for a slow save: rank 0's rename of a finished save directory takes longer,
# for saves after iteration SLOW_PUBLISH_AFTER (the periodic save before the signal is not slowed).
SLOW_PUBLISH = """
import os, re, time
_replace = os.replace
def _slow_replace(src, dst, *args, **kwargs):
    saved = re.search(r"iter_(\\d+)\\.partial$", str(src))
    if saved and int(saved.group(1)) > int(os.environ.get("SLOW_PUBLISH_AFTER", "0")):
        time.sleep(float(os.environ.get("SLOW_PUBLISH_SECONDS", "0")))
    return _replace(src, dst, *args, **kwargs)
os.replace = _slow_replace
"""


def test_config_error_is_one_line_before_workers_start(env, tmp_path):
    """A typo in a choice field is refused by the launch script itself: one line naming the
    key and the allowed values, exit status 2, no torchrun worker started."""
    run = {**env, "CKPT_DIR": str(tmp_path / "ckpt")}
    result = subprocess.run(
        ["bash", "launch/pretrain_stage1.sh", "schedule.decay_style=cosinus"],
        env=run,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "schedule.decay_style" in lines[0] and "'cosinus' is not one of cosine" in lines[0]
    assert "torch.distributed" not in result.stderr + result.stdout
    assert not (tmp_path / "ckpt").exists()


def test_torchrun_runs_the_stage_script_itself(env, tmp_path):
    """`torchrun launch/pretrain_stage2.sh` (no --no-python): torchrun runs the file with
    Python, which hands it to bash; the run trains and saves."""
    run = {**env, "CKPT_DIR": str(tmp_path / "ckpt")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(free_port()),
            "launch/pretrain_stage2.sh",
            "schedule.train_iters=2",
            "schedule.warmup_iters=0",
            "schedule.wsd_decay_iters=1",
            "training.eval_interval=0",
        ],
        env=run,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert _latest(tmp_path / "ckpt") == 2


def _fake_slurm_commands(bin_dir, requeue_log):
    """`sbatch` opens the #SBATCH --output log as SLURM does (in the submission directory,
    creating no directory) and runs the script there; `srun` runs its command here (one node);
    `scontrol` names this host and records requeues."""
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        "#!/usr/bin/env bash\n"
        'out=$(sed -n "s/^#SBATCH --output=//p" "$1" | sed "s/%x/$SLURM_JOB_NAME/; s/%j/$SLURM_JOB_ID/")\n'
        'exec bash "$@" > "$out" 2>&1\n'
    )
    (bin_dir / "srun").write_text(
        '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n'
    )
    (bin_dir / "scontrol").write_text(
        '#!/usr/bin/env bash\ncase "$1" in\n  show) echo localhost ;;\n'
        f'  requeue) echo "$2" >> {requeue_log} ;;\nesac\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)


def _slurm_job(env, tmp_path) -> dict:
    _fake_slurm_commands(tmp_path / "bin", tmp_path / "requeued")
    submit_dir = tmp_path / "submit"  # sbatch runs a copy of the script: REPO is given
    submit_dir.mkdir()
    return {
        **env,
        "PATH": f"{tmp_path / 'bin'}:{env['PATH']}",
        "REPO": os.getcwd(),
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_NAME": "agentic-cpt",
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_SUBMIT_DIR": str(submit_dir),
        "STAGE": "1",
        "NPROC_PER_NODE": "2",
        "CKPT_DIR": str(tmp_path / "ckpt"),
        "MASTER_PORT": str(free_port()),
    }


def _submit(job, *args) -> tuple[subprocess.Popen, Path]:
    """`sbatch launch/slurm/pretrain.sbatch ARGS` through the fake sbatch; returns the job and
    its log (where SLURM would write it)."""
    script = os.path.join(os.getcwd(), "launch/slurm/pretrain.sbatch")
    proc = subprocess.Popen(["sbatch", script, *args], env=job, cwd=job["SLURM_SUBMIT_DIR"])
    return proc, Path(job["SLURM_SUBMIT_DIR"]) / "agentic-cpt-42.out"


def _wait_for_log(proc, log):
    _wait_until(proc, log.exists, lambda: "sbatch wrote no log", timeout=60)


def test_slurm_job_requeues_after_preemption_save_and_resumes(env, tmp_path):
    """The sbatch script on one 'node', after a periodic save: SIGUSR1 (what --signal=B:USR1
    sends) makes the trainer save and exit and the job requeue itself; the requeued job resumes
    from that checkpoint. The log lands where SLURM can open it."""
    job = _slurm_job(env, tmp_path)
    first, log = _submit(job, *LONG_RUN)
    try:
        _wait_for_log(first, log)
        _wait_for_save(first, log, tmp_path / "ckpt")
        _wait_for_iteration(first, log, 3)
        first.send_signal(signal.SIGUSR1)
        assert first.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    stopped = _assert_preemption_saved(tmp_path / "ckpt", log.read_text())
    assert (tmp_path / "requeued").read_text().split() == ["42"]

    job["MASTER_PORT"] = str(free_port())
    again, log = _submit(job, *LONG_RUN, f"training.exit_interval={stopped + 2}")
    assert again.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert f"resumed {tmp_path / 'ckpt'} at iteration {stopped}" in log.read_text()
    assert _latest(tmp_path / "ckpt") == stopped + 2


def test_slurm_job_fails_without_requeue_when_the_save_is_lost(env, tmp_path):
    """A worker killed (-9) while the preemption save is under way: the save cannot be
    published, so the job exits non-zero and is not requeued over it."""
    job = {**_slurm_job(env, tmp_path), "SHUTDOWN_TIMEOUT": "20"}
    first, log = _submit(job, *LONG_RUN)
    try:
        _wait_for_log(first, log)
        _wait_for_save(first, log, tmp_path / "ckpt")
        _wait_for_iteration(first, log, 3)
        workers = [
            p
            for p in psutil.Process(first.pid).children(recursive=True)
            if "megatron_agentic.train" in " ".join(p.cmdline())
            and "torch.distributed.run" not in " ".join(p.cmdline())
        ]
        assert len(workers) == 2
        first.send_signal(signal.SIGUSR1)
        workers[-1].kill()
        status = first.wait(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert status != 0, log.read_text()[-3000:]
    assert not (tmp_path / "requeued").exists()
    assert "not requeueing" in log.read_text()
