"""Crash-safe progress inside one task: finished batches and finished LLM requests.

`BatchCheckpoint` appends each finished batch's output records and counters as one flushed line
to `<name>.partial`; a rerun of the task (same deterministic input order) keeps the complete
lines, cuts a torn last line, and skips the batches already done. `RequestCache` wraps an LLM
backend and appends every finished request's reply, keyed by a hash of the prompt and the call's
arguments, so a task killed in the middle of a batch does not redo the requests that returned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from data_synthesis.engine.io import dumps
from data_synthesis.stage_api import Counters


def _good_lines(path: Path) -> Iterator[dict]:
    """Complete JSON lines of an append-only log; a torn tail (killed mid-write) is cut off."""
    if not path.exists():
        return
    good = 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break
            good += len(line)
            yield entry
    if path.stat().st_size != good:
        with open(path, "r+b") as handle:
            handle.truncate(good)


class BatchCheckpoint:
    """Append-only log of finished batches of one task."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done = sum(1 for _ in _good_lines(self.path))
        self._handle = None

    def append(self, index: int, records: list[dict], counters: Counters) -> None:
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(
            dumps({"batch": index, "records": records, "counters": counters.to_dict()}) + "\n"
        )
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def records(self) -> Iterator[dict]:
        """All output records so far, in batch order (streamed from disk)."""
        for entry in _good_lines(self.path):
            yield from entry["records"]

    def counters(self) -> Counters:
        total = Counters()
        for entry in _good_lines(self.path):
            total.merge(Counters.from_dict(entry["counters"]))
        return total

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


class RequestCache:
    """An LLM backend wrapper that logs finished requests and replays them after a restart."""

    def __init__(self, backend, path: Path):
        self._backend = backend
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._replies = {e["key"]: e["reply"] for e in _good_lines(self.path)}
        self.replayed = 0

    def __getattr__(self, name):
        return getattr(self._backend, name)

    @staticmethod
    def _key(prompt, args, kwargs) -> str:
        raw = json.dumps([prompt, args, kwargs], sort_keys=True, default=repr)
        return hashlib.sha256(raw.encode()).hexdigest()

    def generate(self, prompts: list, *args, **kwargs) -> list:
        keys = [self._key(p, args, kwargs) for p in prompts]
        missing = [i for i, k in enumerate(keys) if k not in self._replies]
        self.replayed += len(prompts) - len(missing)
        if missing:
            replies = self._backend.generate([prompts[i] for i in missing], *args, **kwargs)
            with open(self.path, "a", encoding="utf-8") as handle:
                for i, reply in zip(missing, replies):
                    self._replies[keys[i]] = reply
                    handle.write(dumps({"key": keys[i], "reply": reply}) + "\n")
                handle.flush()
        return [self._replies[k] for k in keys]
