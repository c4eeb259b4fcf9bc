"""The set-up scripts stop before pip with a clear message when the disk is too small.

A CI machine with a nearly full disk once got half-way through torch's multi-GB CUDA wheels and
died with pip's "No space left on device"; scripts/require_disk.sh checks first.
"""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _require(gigabytes: int) -> subprocess.CompletedProcess:
    script = f'source scripts/require_disk.sh; require_free_gb {gigabytes} ".venv (test)"; echo ok'
    return subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True)


def test_enough_space_passes():
    result = _require(0)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_too_little_space_fails_naming_the_need_and_the_place():
    result = _require(10**9)
    assert result.returncode == 1 and "ok" not in result.stdout
    assert "needs about 1000000000 GB free" in result.stderr
    assert str(ROOT) in result.stderr and ".venv (test)" in result.stderr


def test_both_setup_scripts_check_before_installing():
    for name in ("setup_env.sh", "setup_vllm_cpu.sh"):
        text = (ROOT / "scripts" / name).read_text()
        check, install = (
            text.index("require_free_gb "),
            text.index('install "$TORCH"' if "vllm" in name else "install torch"),
        )
        assert check < install, name
        assert "--no-cache-dir" in text, name


def test_vllm_setup_refused_for_space_leaves_no_environment(tmp_path):
    """A refused set-up once left a bare .venv-vllm/bin/python, and the vLLM tests ran against it
    and failed ("No module named 'vllm'") instead of skipping; they now look for the stamp the
    script writes last, and the refusal comes before the environment is made."""
    (tmp_path / "scripts").mkdir()
    for name in ("setup_vllm_cpu.sh", "require_disk.sh"):
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "df").write_text(
        "#!/bin/sh\necho 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
        "echo '/dev/x 104857600 103809024 1048576 99% /'\n"
    )
    (fake_bin / "df").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "scripts/setup_vllm_cpu.sh"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1 and "only 1 GB is free" in result.stderr, result.stderr
    assert not (tmp_path / ".venv-vllm").exists()
