"""Run fingerprints: a run directory belongs to one input and one configuration.

The fingerprint hashes the configuration (every field, as JSON), the map task count, and for each
input file its path, size and the SHA-256 of its first and last 64 KiB (cheap on a terabyte, and it
changes when a file is replaced or appended to). It is written to OUT/run.json on the first run;
a later run over the same OUT with another fingerprint refuses to start and says what differs,
instead of silently mixing old and new outputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import threading
from pathlib import Path

from data_synthesis.engine.io import InputFile, edges_sha256, write_json


class FingerprintMismatch(ValueError):
    """The run directory holds outputs of another input or configuration."""


def file_identity(file: InputFile) -> dict:
    """An input file's path (absolute), size and edges' SHA-256 (`io.edges_sha256`: the
    plan's description read them already)."""
    edges = file.edges or edges_sha256(Path(file.path), file.size)
    return {"path": file.path, "size": file.size, "edges_sha256": edges}


def run_identity(config, files: list[InputFile], map_tasks: int, extra: dict | None = None) -> dict:
    """What the outputs of a run depend on (not how many tasks run at once, nor the executor)."""
    settings = dataclasses.asdict(config)
    for key in ("workers", "executor", "slurm"):
        settings["engine"].pop(key, None)
    return {
        "config": settings,
        "inputs": [file_identity(f) for f in files],
        "map_tasks": map_tasks,
        **(extra or {}),
    }


def fingerprint(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def check_or_record(out: Path, identity: dict) -> str:
    """Record the run's identity in OUT/run.json, or check it against the recorded one."""
    manifest = Path(out) / "run.json"
    digest = fingerprint(identity)
    if manifest.exists() or not _create(manifest, {"fingerprint": digest, "identity": identity}):
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        if recorded["fingerprint"] != digest:
            raise FingerprintMismatch(
                f"{out} holds a run with another input or configuration "
                f"(fingerprint {recorded['fingerprint']}, this run {digest}); differences: "
                f"{_differences(recorded['identity'], identity)}. Use a new --output directory "
                "(or delete this one) instead of mixing outputs."
            )
    return digest


def _create(path: Path, obj) -> bool:
    """Write `path` unless a file is there already, atomically: the tasks of a new run may start
    at once (`--rank`), and the first records the run while the others check against it (a
    shared temporary name made a task fail on the other's rename)."""
    tmp = path.with_name(
        f"{path.name}.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}.tmp"
    )
    write_json(tmp, obj)
    try:
        os.link(tmp, path)  # fails if the file exists, on local and network file systems
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


def _differences(old, new, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{where}.{k}")]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d for i, (a, b) in enumerate(zip(old, new)) for d in _differences(a, b, f"{where}[{i}]")
        ]
    return [] if old == new else [f"{where.lstrip('.')}: {old!r} -> {new!r}"]
