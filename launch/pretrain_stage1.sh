#!/usr/bin/env bash
# Stage 1 of Agentic CPT: Qwen3-30B-A3B at 32K context, FAS-heavy mixture.
#   DATA_BLEND=... TOKENIZER=... CKPT_DIR=/ckpt/stage1 LOAD_DIR=/ckpt/qwen3-30b-a3b-base \
#       bash launch/pretrain_stage1.sh [key.sub=value ...]
# or under your own torchrun: torchrun ... --no-python launch/pretrain_stage1.sh
# CPU=1 uses the tiny stage-1 recipe. All settings: launch/common.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "${CPU:-0}" = "1" ]; then DEFAULT="$HERE/../examples/recipes/tiny_stage1.yaml"
else DEFAULT="$HERE/../examples/recipes/stage1_qwen3_30b_a3b.yaml"; fi
export CONFIG="${CONFIG:-$DEFAULT}"
exec bash "$HERE/common.sh" "$@"
