#!/usr/bin/env bash
# Shared by launch/pretrain_stage{1,2}.sh: check the config, then start megatron_agentic.train under
# torchrun and supervise it; or run the trainer directly when torchrun already started this script
# (`torchrun launch/pretrain_stage1.sh`, or `torchrun ... --no-python launch/...`).
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
#   SHUTDOWN_TIMEOUT seconds torchrun gives the workers to save and exit after a signal before it
#                   kills them; must cover one checkpoint save at full scale  [1800]
#   CPU=1           run on CPU with gloo (tiny recipes only)
# Further key.sub=value overrides are passed as arguments.
#
# Preemption: SIGTERM or SIGUSR1 to this script (or to torchrun, or to every process) makes the
# trainer save after the current step and exit. This script exits 0 when that save was published
# (the trainer records it in $MEGATRON_AGENTIC_EXIT_FILE) and non-zero when it was not, so a job
# script can requeue only over a finished save.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$( [ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3 )}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

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
# The whole config is checked here, before any worker starts: an error is one line (the
# imports' warnings are dropped unless the checker itself fails some other way).
if ! CHECK="$("$PYTHON" -m megatron_agentic.config --config "$CONFIG" \
        --world-size $(( ${NNODES:-1} * NPROC_PER_NODE )) "${OVERRIDES[@]}" "$@" 2>&1)"; then
    grep '^config error: ' <<<"$CHECK" >&2 || echo "$CHECK" >&2
    exit 2
fi

echo "[launch] $(hostname): ${NNODES:-1} node(s) x $NPROC_PER_NODE processes, config $CONFIG" >&2
MEGATRON_AGENTIC_EXIT_FILE="$(mktemp "${TMPDIR:-/tmp}/megatron-agentic-exit.XXXXXX")"
export MEGATRON_AGENTIC_EXIT_FILE
rm -f "$MEGATRON_AGENTIC_EXIT_FILE"  # the trainer writes it at a clean end
"$PYTHON" -m torch.distributed.run \
    --nnodes "${NNODES:-1}" --node-rank "${NODE_RANK:-0}" --nproc-per-node "$NPROC_PER_NODE" \
    --master-addr "${MASTER_ADDR:-localhost}" --master-port "${MASTER_PORT:-29500}" \
    --shutdown-timeout "${SHUTDOWN_TIMEOUT:-1800}" \
    --signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \
    -m megatron_agentic.train --config "$CONFIG" "${OVERRIDES[@]}" "$@" &
TORCHRUN=$!

# A stop signal goes straight to the workers (torchrun's children): they save and exit 0, and
# torchrun, not signalled itself, reports their real status.
forward() {
    echo "[launch] SIG$1: asking the trainer to save and stop" >&2
    pkill "-$1" -P "$TORCHRUN" || true
}
trap 'forward TERM' TERM
trap 'forward USR1' USR1
trap 'forward INT' INT
while :; do
    status=0
    wait "$TORCHRUN" || status=$?
    # wait returns >128 when a trapped signal interrupts it; torchrun is then still running.
    if [ "$status" -gt 128 ] && kill -0 "$TORCHRUN" 2>/dev/null; then continue; fi
    break
done
if [ "$status" -ne 0 ] && [ -s "$MEGATRON_AGENTIC_EXIT_FILE" ]; then
    # torchrun exits non-zero whenever it was signalled itself; the workers finished cleanly.
    echo "[launch] torchrun exited with status $status after a signal, but the trainer $(cat "$MEGATRON_AGENTIC_EXIT_FILE")" >&2
    status=0
elif [ "$status" -ne 0 ]; then
    echo "[launch] training failed (torchrun status $status); the last published checkpoint in $CKPT_DIR is the one to resume from" >&2
fi
rm -f "$MEGATRON_AGENTIC_EXIT_FILE"
exit "$status"
