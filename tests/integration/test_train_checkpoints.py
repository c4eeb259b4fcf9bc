"""Integration tests (2 gloo ranks): checkpoint retention, integrity and a full disk.

- Retention: `keep_last_n`/`keep_every_m` leave exactly the newest N plus every M-th iteration.
- Integrity (issue 19.5): every save records size + sha256 of its files; a shard with 64 bytes
  changed, truncated or emptied is named at load (before: a silently different run, or a bare
  EOFError); with `checkpoint.fallback_to_intact` the run resumes from the newest intact
  iteration and trains exactly as the uninterrupted run did.
- Disk full (issue 19.9): on a real 4 MiB tmpfs (mounted in a private mount namespace) the second
  save does not fit: "no space left on <path>", exit code 4, the first checkpoint stays the
  latest and no partial directory is left - for synchronous saves and for background (async)
  ones, whose failure surfaces when megatron-core finalizes them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from megatron_agentic.checkpoint_files import (
    checkpoint_problems,
    iteration_dir,
    published_iterations,
    read_latest,
    verify_checkpoint,
)
from megatron_agentic.testing.distributed import run_distributed
from megatron_agentic.testing.train_fixtures import (
    data_overrides,
    train_in_process,
    trainer_command,
    trainer_env,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return data_overrides(tmp_path_factory.mktemp("ckpt_data"))


COMMON = ["parallel.ep=2", "schedule.train_iters=7", "training.eval_interval=0"]


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """A run stopped at iteration 5 that saved every iteration, keeping the newest 2 and every
    3rd: (checkpoint root, its 5 losses)."""
    root = tmp_path_factory.mktemp("saved") / "ckpt"
    argv = [
        *data,
        *COMMON,
        f"checkpoint.save={root}",
        "checkpoint.save_interval=1",
        "checkpoint.keep_last_n=2",
        "checkpoint.keep_every_m=3",
        "training.exit_interval=5",
    ]
    losses, _ = run_distributed(train_in_process, 2, argv, timeout=300)
    return root, losses


def test_retention_keeps_the_newest_two_and_every_third(saved):
    root, losses = saved
    assert len(losses) == 5
    assert published_iterations(root) == [3, 4, 5]
    assert read_latest(root) == 5
    assert not list(root.glob(".iter_*"))


def _largest_shard(directory: Path) -> Path:
    return max(directory.glob("*.distcp"), key=lambda path: path.stat().st_size)


def _flip_64_bytes(path: Path) -> None:
    with open(path, "r+b") as file:
        file.seek(path.stat().st_size // 2)
        chunk = file.read(64)
        file.seek(-len(chunk), 1)
        file.write(bytes(b ^ 0xFF for b in chunk))


@pytest.mark.parametrize("damage", ["changed", "truncated", "empty"])
def test_a_damaged_shard_is_named(saved, tmp_path, damage):
    directory = tmp_path / "iter"
    shutil.copytree(iteration_dir(saved[0], 5), directory)
    assert checkpoint_problems(directory) == []
    shard = _largest_shard(directory)
    size = shard.stat().st_size
    if damage == "changed":
        _flip_64_bytes(shard)
        expected = f"{shard}: contents changed since the save (sha256 differs)"
    elif damage == "truncated":
        shard.write_bytes(shard.read_bytes()[: size // 3])
        expected = f"{shard}: truncated: {size // 3} bytes, {size} were saved"
    else:
        shard.write_bytes(b"")
        expected = f"{shard}: empty: 0 bytes, {size} were saved"
    assert checkpoint_problems(directory) == [expected]
    with pytest.raises(RuntimeError, match="1 file\\(s\\) differ from what was saved") as error:
        verify_checkpoint(directory)
    assert str(shard) in str(error.value)


def test_corrupt_latest_fails_naming_the_file_or_falls_back_to_the_intact_one(
    data, saved, tmp_path
):
    root = tmp_path / "ckpt"
    shutil.copytree(saved[0], root)
    shard = _largest_shard(iteration_dir(root, 5))
    _flip_64_bytes(shard)
    argv = [*data, *COMMON, f"checkpoint.save={root}", "checkpoint.save_interval=100"]

    with pytest.raises(RuntimeError, match="CheckpointCorrupt") as error:
        run_distributed(train_in_process, 2, argv, timeout=300)
    assert f"{shard}: contents changed since the save" in str(error.value)
    assert "checkpoint.fallback_to_intact=true" in str(error.value)

    losses, _ = run_distributed(
        train_in_process, 2, [*argv, "checkpoint.fallback_to_intact=true"], timeout=300
    )
    # Resumed from iteration 4: iterations 5-7; iteration 5 equals the uninterrupted run's.
    assert len(losses) == 3
    assert losses[0] == pytest.approx(saved[1][4], rel=1e-5, abs=1e-6)
    assert read_latest(root) == 7
    assert checkpoint_problems(iteration_dir(root, 7)) == []


UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]  # a private mount namespace


def _can_mount_tmpfs(where: Path) -> bool:
    probe = subprocess.run(
        [*UNSHARE, "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {where}"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_disk_full_during_a_save_keeps_the_previous_checkpoint(data, tmp_path, mode):
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("unshare") is None or not _can_mount_tmpfs(disk):
        pytest.skip("needs unshare and user+mount namespaces to mount a small tmpfs")
    save = disk / "ckpt"
    command = trainer_command(
        *data,
        f"checkpoint.save={save}",
        "schedule.train_iters=4",
        "checkpoint.save_interval=2",
        "training.eval_interval=0",
        f"checkpoint.async_save={str(mode == 'async').lower()}",
    )
    # One checkpoint of the tiny model is ~2.6 MB: the first fits in 4 MiB, the second does not.
    script = (
        f'mount -t tmpfs -o size=4m tmpfs "{disk}" || exit 99\n'
        f'"$@"\necho "trainer exit $?"\n'
        f'echo "latest $(cat "{save}/latest_checkpointed_iteration.txt")"\n'
        f'ls -a "{save}"\n'
    )
    result = subprocess.run(
        [*UNSHARE, "sh", "-c", script, "sh", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        env=trainer_env(),
    )
    output = result.stdout
    expected = f"error: no space left on {save} while saving iteration 4; iteration 2 stays the"
    assert f"{expected} latest checkpoint" in output, output[-4000:]
    assert "exitcode  : 4" in output and "trainer exit 0" not in output
    assert "latest 2" in output
    listing = output[output.index("latest 2") :]
    assert "iter_0000002" in listing and ".iter_0000004.partial" not in listing
