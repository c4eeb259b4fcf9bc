#!/usr/bin/env bash
# The GPU path on ONE H100/H200, in one call, in under 10 minutes (budget per step below).
# WRITTEN BUT NEVER RUN ON A GPU: no device has been lent yet. `bash -n` checks it, and
# `benchmarks/gpu/run_all.sh --cpu-dry-run` runs every CPU-capable part on a CPU (docs/benchmarks.md).
#
# Install everything it needs (CUDA 12.x machine with torch already installed), one command:
#     pip install --no-build-isolation -e ".[gpu,dev]"
# (the `gpu` extra is transformer-engine[pytorch]; it builds against the installed torch).
#
# Steps (benchmarks/gpu/gpu_check.py), each in its own process, each reported PASS/FAIL with seconds:
#   build   ~60 s  tiny + 4-layer full-width proxy with the TE spec (bf16, grouped GEMM, TE attention)
#   import  ~20 s  tiny HF Qwen3-MoE -> megatron checkpoint
#   train   ~60 s  20 steps from it, bf16, TE spec, saved
#   export  ~20 s  reload on CPU with the local spec, export HF
#   parity  ~30 s  HF logits vs the checkpoint under the TE spec (GPU) and the local spec (CPU)
#   thd     ~20 s  document masking through TE's packed THD path
#   mfu     ~4 min proxy throughput/MFU at 4K and 32K, peak memory against the planner's estimate
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DRY=""
if [[ "${1:-}" == "--cpu-dry-run" ]]; then DRY="--cpu-dry-run"; fi
WORK="${WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}"
PY="${PYTHON:-python}"
FAILED=0

if [[ -z "$DRY" ]]; then
    "$PY" -c "import torch, transformer_engine as te; print('torch', torch.__version__, 'TE', te.__version__, torch.cuda.get_device_name())" \
        || { echo "FAIL: TransformerEngine/GPU missing: pip install --no-build-isolation -e '.[gpu,dev]'"; exit 1; }
fi

run_step() {  # name, budget seconds, command...
    local name=$1 budget=$2; shift 2
    local start=$SECONDS
    if timeout "$budget" "$@"; then
        echo "PASS $name ($((SECONDS - start)) s)"
    else
        echo "FAIL $name ($((SECONDS - start)) s, budget $budget s)"; FAILED=$((FAILED + 1))
    fi
}

BUDGET=150  # seconds a step may take on the GPU machine (the expected times above are less)
if [[ -n "$DRY" ]]; then BUDGET=900; fi  # a shared 2-core CPU is far slower
for step in build import train export parity thd; do
    run_step "$step" "$BUDGET" "$PY" benchmarks/gpu/gpu_check.py "$step" --work "$WORK" $DRY
done

if [[ -z "$DRY" ]]; then
    # MFU of the 4-layer proxy at 4K and 32K (no recompute), and its peak memory; then the
    # planner's estimate for the same model and layout (one GPU) to compare with that peak.
    run_step mfu 300 "$PY" benchmarks/bench_train.py --layers 4 --seq-lengths 4096 32768 --steps 3
    "$PY" - <<'EOF'
from megatron_agentic.model import get_preset
from megatron_agentic.planner import Layout, estimate

proxy = get_preset("qwen3_30b_a3b", num_layers=4)
for seq in (4096, 32768):
    e = estimate(proxy, Layout(recompute="none"), seq, 1, 1, 1, gpus_per_node=1)
    print(f"planner, proxy at {seq}: ~{e.total_gb:.1f} GB (activations {e.activations_gb:.1f}, "
          f"weights+grads {e.weights_and_grads_gb:.1f}, optimizer {e.optimizer_gb:.1f}, "
          f"MoE buffers {e.moe_buffers_gb:.1f}, +6 fixed) - compare with bench_train's peak GiB")
EOF
fi
echo "work directory: $WORK; failed steps: $FAILED"
exit "$FAILED"
