"""Unit tests (single process, seconds) of the trainer's parts that need no process group:
the command line, checkpoint retention on a real directory tree, and the MFU peak lookup."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from megatron_agentic.checkpoint_files import (
    LATEST,
    apply_retention,
    iteration_dir,
    published_iterations,
    write_latest,
)

REPO = Path(__file__).resolve().parents[2]


def test_help_is_fast_imports_no_torch_and_explains_every_flag():
    """`--help` used to import megatron-core first (6.7-7.3 s here, 25-35 s on a loaded node)."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['megatron_agentic.train', '--help']\n"
        "try:\n"
        "    runpy.run_module('megatron_agentic.train', run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "print('heavy modules:', sorted({'torch', 'megatron.core', 'yaml'} & set(sys.modules)))\n"
    )
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    seconds = time.perf_counter() - start
    assert run.returncode == 0, run.stderr
    assert "heavy modules: []" in run.stdout
    assert "--config RECIPE.yaml" in run.stdout and "exit codes" in run.stdout
    assert seconds < 5.0, f"--help took {seconds:.1f} s"

    from megatron_agentic.train import build_parser

    for action in build_parser()._actions:
        assert action.help and len(action.help) > 10, action.dest


def _published(root: Path, iterations) -> None:
    for iteration in iterations:
        directory = iteration_dir(root, iteration)
        directory.mkdir(parents=True)
        (directory / "__0_0.distcp").write_bytes(bytes(100))
    write_latest(root, max(iterations))


def test_retention_keeps_the_newest_n_and_every_mth_and_nothing_else(tmp_path):
    _published(tmp_path, range(1, 11))
    (tmp_path / ".iter_0000011.partial").mkdir()  # a save in progress is not a checkpoint
    deleted = apply_retention(tmp_path, 10, keep_last_n=2, keep_every_m=4)
    assert deleted == [1, 2, 3, 5, 6, 7]
    assert published_iterations(tmp_path) == [4, 8, 9, 10]
    assert (tmp_path / ".iter_0000011.partial").is_dir()
    assert (tmp_path / LATEST).read_text().strip() == "10"
    assert not list(tmp_path.glob(".*.deleting"))


def test_retention_ignores_checkpoints_above_the_one_just_published(tmp_path):
    """A run that fell back to iteration 4 (5 and 6 damaged) publishes 5: the stale 6 is neither
    counted among the newest nor deleted (the run overwrites it when it gets there)."""
    _published(tmp_path, [2, 3, 4, 5, 6])
    assert apply_retention(tmp_path, 5, keep_last_n=2, keep_every_m=None) == [2, 3]
    assert published_iterations(tmp_path) == [4, 5, 6]


def test_retention_off_keeps_everything_and_clears_interrupted_deletions(tmp_path):
    _published(tmp_path, [1, 2, 3])
    (tmp_path / ".iter_0000000.deleting").mkdir()  # a deletion killed half-way
    assert apply_retention(tmp_path, 3, keep_last_n=None, keep_every_m=None) == []
    assert published_iterations(tmp_path) == [1, 2, 3]
    assert not (tmp_path / ".iter_0000000.deleting").exists()


@pytest.mark.parametrize(
    "configured, expected", [(None, None), (500.0, 500.0)], ids=["cpu-unknown", "configured"]
)
def test_mfu_needs_a_known_peak(configured, expected):
    import torch

    from megatron_agentic.metrics import peak_tflops

    if torch.cuda.is_available():
        pytest.skip("checks the CPU case")
    assert peak_tflops(configured) == expected
