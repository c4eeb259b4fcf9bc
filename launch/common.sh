#!/usr/bin/env bash
# Shared by launch/pretrain_stage{1,2}.sh: start megatron_agentic.train under torchrun, or run it
# directly when torchrun already started this script (`torchrun ... --no-python launch/...`).
#
# Settings (environment variables; defaults in brackets):
#   CONFIG          recipe YAML                      [set by the stage script]
#   DATA_BLEND      blend YAML (data.blend)          [required]
#   TOKENIZER       tokenizer dir/file (data.tokenizer_model) [required]
#   CKPT_DIR        where this stage saves/resumes (checkpoint.save) [required]
#   LOAD_DIR        checkpoint to start from (checkpoint.load), e.g. the imported base model or
#                   stage 1's result; ignored once CKPT_DIR holds a checkpoint   [none]
#   TENSORBOARD_DIR TensorBoard logs (logging.tensorboard_dir) [$CKPT_DIR/tensorboard]
#   NPROC_PER_NODE  processes per node   [GPUs seen by nvidia-smi; 2 with CPU=1]
#   NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT   multi-node rendezvous [1, 0, localhost, 29500]
#   CPU=1           run on CPU with gloo (tiny recipes only)
# Further key.sub=value overrides are passed as arguments.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$( [ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3 )}"

: "${DATA_BLEND:?set DATA_BLEND to a blend YAML (see docs/data.md)}"
: "${TOKENIZER:?set TOKENIZER to the tokenizer directory}"
: "${CKPT_DIR:?set CKPT_DIR to the checkpoint directory of this stage}"
OVERRIDES=("data.blend=$DATA_BLEND" "data.tokenizer_model=$TOKENIZER" "checkpoint.save=$CKPT_DIR"
           "logging.tensorboard_dir=${TENSORBOARD_DIR:-$CKPT_DIR/tensorboard}")
[ -n "${LOAD_DIR:-}" ] && OVERRIDES+=("checkpoint.load=$LOAD_DIR")

if [ -n "${TORCHELASTIC_RUN_ID:-}" ] || [ -n "${LOCAL_RANK:-}" ]; then
    # Already one of torchrun's workers.
    exec "$PYTHON" -m megatron_agentic.train --config "$CONFIG" "${OVERRIDES[@]}" "$@"
fi

if [ "${CPU:-0}" = "1" ]; then
    NPROC_PER_NODE="${NPROC_PER_NODE:-2}"
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
elif [ -z "${NPROC_PER_NODE:-}" ]; then
    NPROC_PER_NODE=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    if [ "${NPROC_PER_NODE:-0}" = "0" ]; then
        echo "no GPU found (nvidia-smi -L); set CPU=1 for a CPU run, or NPROC_PER_NODE" >&2
        exit 1
    fi
fi
echo "[launch] $(hostname): ${NNODES:-1} node(s) x $NPROC_PER_NODE processes, config $CONFIG" >&2
exec "$PYTHON" -m torch.distributed.run \
    --nnodes "${NNODES:-1}" --node-rank "${NODE_RANK:-0}" --nproc-per-node "$NPROC_PER_NODE" \
    --master-addr "${MASTER_ADDR:-localhost}" --master-port "${MASTER_PORT:-29500}" \
    -m megatron_agentic.train --config "$CONFIG" "${OVERRIDES[@]}" "$@"
