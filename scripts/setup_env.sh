#!/usr/bin/env bash
# Create (or reuse) the project-local virtual environment .venv with Python >= 3.12.
#
# torch is installed first, on its own, and then pinned with a constraints file so that no later
# install (megatron-core, transformers, extras) can replace it. Re-running is cheap: when the
# install inputs have not changed since the last successful run, nothing is installed.
#
# Usage: bash scripts/setup_env.sh [EXTRAS]     e.g. EXTRAS=dev  or  dev,gpu
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/require_disk.sh
EXTRAS="${1:-dev}"
VENV=.venv

find_python() {
    local cand v
    for cand in python3.14 python3.13 python3.12 python3 python; do
        if command -v "$cand" >/dev/null 2>&1 &&
            "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
            command -v "$cand"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for v in $(ls -d "$(pyenv root)"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V -r); do
            if "$v" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
                echo "$v"; return 0
            fi
        done
    fi
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    PYTHON=$(find_python) || {
        echo "ERROR: megatron-agentic needs Python >= 3.12 (megatron-core 0.17+ requires it)." >&2
        echo "Install one, e.g. 'pyenv install 3.12' or your OS package 'python3.12' (with venv)," >&2
        echo "and make sure it is on PATH or under \$(pyenv root)/versions." >&2
        exit 1
    }
    echo "[setup] creating $VENV with $PYTHON ($("$PYTHON" --version))"
    "$PYTHON" -m venv "$VENV"
fi
# --no-cache-dir: a second copy of the multi-GB torch/CUDA wheels in ~/.cache/pip can fill a small disk
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-cache-dir -q)

stamp="$VENV/.megatron-agentic-installed"
want="$(cat setup.py scripts/setup_env.sh | sha256sum | cut -c1-16)-$EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    # PyPI's Linux torch is the CUDA build: 6.3 GB of .venv measured with everything installed
    require_free_gb 7 "$VENV (torch's CUDA build from PyPI, megatron-core, transformers)"
    echo "[setup] installing torch (first, on its own; a few minutes)"
    "${PIP[@]}" install --upgrade pip
    "${PIP[@]}" install torch
fi
constraints="$VENV/torch-constraints.txt"
"$VENV/bin/python" -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' > "$constraints"
echo "[setup] installing megatron-agentic[$EXTRAS] (torch pinned: $(cat "$constraints"))"
# compat mode: a path entry to the checkout, so new packages and modules need no reinstall
"${PIP[@]}" install -c "$constraints" --config-settings editable_mode=compat -e ".[$EXTRAS]"
if [[ ",$EXTRAS," == *",dev,"* ]]; then
    # transformers 4.x apart from the venv, for tests/integration/test_convert_transformers4.py (exports must
    # load the same under 4.x, which reads rope_theta/rope_scaling, and 5.x): put on PYTHONPATH
    # first by that test only. --no-deps: the venv supplies the rest.
    echo "[setup] installing transformers 4.57 into $VENV/transformers4 (export compatibility test)"
    "${PIP[@]}" install --no-deps --upgrade --target "$VENV/transformers4" \
        "transformers==4.57.*" "huggingface_hub>=0.34,<1.0" "tokenizers>=0.22,<0.23"
fi
echo "$want" > "$stamp"
echo "[setup] ready: $VENV ($("$VENV/bin/python" --version), $(cat "$constraints"))"
