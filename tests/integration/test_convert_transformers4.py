"""Integration test: an export loads under transformers 4.x exactly as the base model does under
5.x. transformers 4.57 reads the top-level `rope_theta` / `rope_scaling` of config.json, not 5.x's
`rope_parameters`; without them it silently uses theta 10000 and plain RoPE. transformers 4.57
lives apart in .venv/transformers4 (scripts/setup_env.sh dev) and runs in a subprocess with that
directory first on PYTHONPATH; the test is skipped when the directory is absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from megatron_agentic.testing.hf_fixtures import make_tiny_hf_model

TRANSFORMERS4 = Path(__file__).resolve().parents[2] / ".venv" / "transformers4"
TOKENS = [[5, 17, 99, 3, 250, 42, 7, 311, 64, 128, 9, 77, 201, 33, 8, 2]]

LOGITS_UNDER_4 = """
import json, sys, torch, transformers
assert transformers.__version__.startswith("4."), transformers.__version__
out = {}
for directory in sys.argv[2:]:
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32)
    with torch.no_grad():
        out[directory] = model.eval()(torch.tensor(json.loads(sys.argv[1]))).logits.tolist()
print(json.dumps(out))
"""


@pytest.mark.skipif(
    not TRANSFORMERS4.is_dir(), reason=f"{TRANSFORMERS4} absent: bash scripts/setup_env.sh dev"
)
def test_yarn_export_loads_identically_under_transformers4(tmp_path):
    from transformers import AutoModelForCausalLM

    from tools.convert_checkpoint import main as convert

    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256}
    hf = make_tiny_hf_model(tmp_path / "hf", rope=yarn, rope_theta=50_000.0)
    assert convert(["hf-to-megatron", "--hf-model", str(hf), "--output", str(tmp_path / "m")]) == 0
    export = tmp_path / "export"
    assert convert(["megatron-to-hf", "--input", str(tmp_path / "m"), "--output", str(export)]) == 0
    # control: the same export with transformers 5's rope spelling only
    v5_only = tmp_path / "v5_only"
    shutil.copytree(export, v5_only)
    config = json.loads((v5_only / "config.json").read_text())
    del config["rope_theta"], config["rope_scaling"]
    (v5_only / "config.json").write_text(json.dumps(config))

    base = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = base(torch.tensor(TOKENS)).logits
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TRANSFORMERS4), os.getcwd()])}
    result = subprocess.run(
        [sys.executable, "-c", LOGITS_UNDER_4, json.dumps(TOKENS), str(export), str(v5_only)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logits = json.loads(result.stdout.strip().splitlines()[-1])
    assert (torch.tensor(logits[str(export)]) - expected).abs().max().item() < 1e-4
    assert (torch.tensor(logits[str(v5_only)]) - expected).abs().max().item() > 1e-3
