#!/usr/bin/env bash
# Stage 1 of Agentic CPT: Qwen3-30B-A3B at 32K context, FAS-heavy mixture.
#   DATA_BLEND=... TOKENIZER=... CKPT_DIR=/ckpt/stage1 LOAD_DIR=/ckpt/qwen3-30b-a3b-base \
#       bash launch/pretrain_stage1.sh [key.sub=value ...]
# or under your own torchrun, either form:
#   torchrun --nproc-per-node 8 launch/pretrain_stage1.sh [key.sub=value ...]
#   torchrun --nproc-per-node 8 --no-python launch/pretrain_stage1.sh [key.sub=value ...]
# (then give torchrun --shutdown-timeout long enough for a save; launch/common.sh does).
# CPU=1 uses the tiny stage-1 recipe. All settings: launch/common.sh.
#
# This file is valid bash and valid Python: torchrun without --no-python runs it with Python,
# whose part (at the end) re-runs it with bash. Keep the bash part free of three single
# quotes; the Python part is a here-document to bash, ended by the lone '#'.
"true" r'''\'
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "${CPU:-0}" = "1" ]; then DEFAULT="$HERE/../examples/recipes/tiny_stage1.yaml"
else DEFAULT="$HERE/../examples/recipes/stage1_qwen3_30b_a3b.yaml"; fi
export CONFIG="${CONFIG:-$DEFAULT}"
exec bash "$HERE/common.sh" "$@"
: <<'#'
'''
import os
import sys

os.environ.setdefault("PYTHON", sys.executable)
os.execvp("bash", ["bash", os.path.abspath(__file__), *sys.argv[1:]])
#
