#!/usr/bin/env bash
# The main job on the small embedded default, on a fresh CPU machine: set up .venv (once), then run
# the end-to-end quickstart. Arguments go to `python -m megatron_agentic.quickstart`
# (e.g. `--output runs/quickstart`; see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m megatron_agentic.quickstart "$@"
