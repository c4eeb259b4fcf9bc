#!/usr/bin/env bash
# Stage 2 of Agentic CPT: 128K context (YaRN, context parallel), HAS-heavy mixture, continuing from
# stage 1 (LOAD_DIR=<stage 1 CKPT_DIR>).
#   DATA_BLEND=... TOKENIZER=... CKPT_DIR=/ckpt/stage2 LOAD_DIR=/ckpt/stage1 \
#       bash launch/pretrain_stage2.sh [key.sub=value ...]
# or under your own torchrun: torchrun ... --no-python launch/pretrain_stage2.sh
# CPU=1 uses the tiny stage-2 recipe. All settings: launch/common.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "${CPU:-0}" = "1" ]; then DEFAULT="$HERE/../examples/recipes/tiny_stage2.yaml"
else DEFAULT="$HERE/../examples/recipes/stage2_qwen3_30b_a3b_128k.yaml"; fi
export CONFIG="${CONFIG:-$DEFAULT}"
exec bash "$HERE/common.sh" "$@"
