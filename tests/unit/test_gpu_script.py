"""The GPU script's own imports resolve: it runs only where a GPU is lent (rarely), so a module
renamed since its last run would only show there (it did once: `megatron_agentic.hf_conversion`).
Every `from <ours> import names` in it, inside functions too, must name something that exists."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("megatron_agentic", "tools", "benchmarks")


def _sources() -> dict[str, str]:
    sources = {
        path: (ROOT / path).read_text()
        for path in ("benchmarks/gpu/gpu_check.py", "benchmarks/bench_train.py")
    }
    script = (ROOT / "benchmarks/gpu/run_all.sh").read_text()
    for number, block in enumerate(re.findall(r"<<'EOF'\n(.*?)\nEOF", script, re.S)):
        sources[f"run_all.sh heredoc {number}"] = block
    return sources


def _imports() -> list[tuple[str, str, str]]:
    found = []
    for where, source in _sources().items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(OURS):
                found += [(where, node.module, alias.name) for alias in node.names]
    return found


def test_the_gpu_script_has_python_of_ours_to_check():
    assert len(_sources()) >= 3 and len(_imports()) >= 10


@pytest.mark.parametrize(("where", "module", "name"), _imports())
def test_each_import_of_the_gpu_script_exists(where, module, name):
    imported = importlib.import_module(module)
    assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}"), (
        f"{where}: from {module} import {name}: no such name"
    )
