#!/usr/bin/env bash
# The whole test suite, on a fresh machine: set up .venv (once), then run pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k preprocess`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
