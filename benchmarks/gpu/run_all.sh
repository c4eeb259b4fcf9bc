#!/usr/bin/env bash
# Everything issue 7 wants measured on a GPU, in one call (TransformerEngine must be installed):
# the proxy's throughput/MFU at 4K and 32K without recompute, the longest length that fits with
# full recompute, and the planner's estimate for the same layout to compare with the peak.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
python -c "import transformer_engine, torch; print('TE', transformer_engine.__version__, torch.cuda.get_device_name())"
python benchmarks/bench_train.py --layers 4 --seq-lengths 4096 32768
python benchmarks/bench_train.py --layers 4 --seq-lengths 65536 131072 --recompute full
python tools/plan_parallelism.py --preset qwen3_30b_a3b --seq-length 32768 --global-batch 1 \
    --nodes 1 --gpus-per-node 1 --layout tp=1,pp=1,ep=1,recompute=none
