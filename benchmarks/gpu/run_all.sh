#!/usr/bin/env bash
# The GPU path on ONE H100/H200, in one call, in under 10 minutes (budget per step below).
# With TransformerEngine it checks the TE spec; without it, megatron-core's local spec on the GPU
# (what a GPU machine without TE trains with: no grouped GEMM, unfused attention). Only the second
# has run (one H200, 2026-12-04: docs/benchmarks.md). `benchmarks/gpu/run_all.sh --cpu-dry-run`
# runs every CPU-capable part on a CPU.
#
# Install everything it needs (CUDA 12.x machine with torch already installed), one command:
#     pip install --no-build-isolation -e ".[gpu,dev]"
# (the `gpu` extra is transformer-engine[pytorch]; it builds against the installed torch).
#
# Steps (benchmarks/gpu/gpu_check.py), each in its own process, each reported PASS/FAIL with seconds:
#   build   ~60 s  tiny + 4-layer full-width proxy, bf16 (TE: grouped GEMM, TE attention)
#   import  ~20 s  tiny HF Qwen3-MoE -> megatron checkpoint
#   train   ~60 s  20 steps from it, bf16, saved
#   export  ~20 s  reload on CPU with the local spec, export HF
#   parity  ~30 s  HF logits vs the checkpoint on the GPU and under the local spec on CPU
#   thd     ~20 s  document masking (TE: its packed THD path; local spec: the dense mask)
#   mfu     ~4 min proxy throughput/MFU at 4K and 32K, 4 layers (local spec: 2 layers at 2K-8K,
#                  its attention keeps the s^2 scores), peak memory against the planner's estimate
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DRY=""
if [[ "${1:-}" == "--cpu-dry-run" ]]; then DRY="--cpu-dry-run"; fi
WORK="${WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}"
PY="${PYTHON:-python}"
FAILED=0

LAYERS=4 SEQS=(4096 32768)
if [[ -z "$DRY" ]]; then
    "$PY" -c "import torch; assert torch.cuda.is_available(); print('torch', torch.__version__, torch.cuda.get_device_name())" \
        || { echo "FAIL: no GPU visible to torch"; exit 1; }
    if ! "$PY" -c "import transformer_engine as te; print('TE', te.__version__)" 2>/dev/null; then
        echo "WARNING: no TransformerEngine: checking megatron-core's local spec on the GPU instead"
        echo "         (for the TE path: pip install --no-build-isolation -e '.[gpu,dev]')"
        LAYERS=2 SEQS=(2048 4096 8192)
    fi
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

BUDGET=${STEP_BUDGET:-150}  # seconds a step may take on the GPU machine (expected: less, above)
if [[ -n "$DRY" ]]; then BUDGET=900; fi  # a shared 2-core CPU is far slower
for step in build import train export parity thd; do
    run_step "$step" "$BUDGET" "$PY" benchmarks/gpu/gpu_check.py "$step" --work "$WORK" $DRY
done

if [[ -z "$DRY" ]]; then
    # MFU of the proxy (no recompute), and its peak memory; then the planner's estimate
    # for the same model and layout (one GPU) to compare with that peak.
    run_step mfu "${MFU_BUDGET:-300}" "$PY" benchmarks/bench_train.py --layers "$LAYERS" \
        --seq-lengths "${SEQS[@]}" --steps 3
    "$PY" - "$LAYERS" "${SEQS[@]}" <<'EOF'
import sys

from megatron_agentic.layer_specs import transformer_engine_available
from megatron_agentic.model import get_preset
from megatron_agentic.planner import GB, Layout, activation_elements_per_token, estimate

proxy = get_preset("qwen3_30b_a3b", num_layers=int(sys.argv[1]))
none = Layout(recompute="none")
for seq in map(int, sys.argv[2:]):
    e = estimate(proxy, none, seq, 1, 1, 1, gpus_per_node=1)
    # the estimate assumes flash attention; the local spec's unfused attention keeps more per layer
    unfused = 0.0
    if not transformer_engine_available():
        extra = activation_elements_per_token(proxy, none, seq, flash=False)
        extra -= activation_elements_per_token(proxy, none, seq)
        unfused = 2 * seq * extra * (proxy.num_layers + 1) / GB
    print(f"planner, proxy at {seq}: ~{e.total_gb + unfused:.1f} GB (activations "
          f"{e.activations_gb + unfused:.1f} incl. unfused attention {unfused:.1f}, weights+grads "
          f"{e.weights_and_grads_gb:.1f}, optimizer {e.optimizer_gb:.1f}, MoE buffers "
          f"{e.moe_buffers_gb:.1f}, +6 fixed) - compare with bench_train's peak GiB")
EOF
fi
echo "work directory: $WORK; failed steps: $FAILED"
exit "$FAILED"
