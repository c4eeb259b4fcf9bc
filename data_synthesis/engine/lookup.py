"""On-disk look-up tables: key -> integers, found by binary search in a memory-mapped array.

A table is two rows of uint64 (a stable 64-bit hash of each key, a number stored under it),
sorted by hash, saved with numpy (`*.table.npy`). A look-up maps the table (nothing is read
whole), binary-searches the hash and returns every number stored under it, in order. Most
tables store the byte offset of the key's line in a JSONL file: callers read the line there
and check it is the key's (two keys sharing a 64-bit hash are possible in principle); the
entity memory's membership tables store counts. Used by the entity memory (data_synthesis/engine/memory_store.py) and
the search index's page look-up (data_synthesis/environment/index.py), so neither keeps a dict
that grows with the corpus.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from data_synthesis.engine.io import stable_hash


def write_table(path: Path, pairs) -> None:
    """A look-up table: (key, number) pairs as two rows of uint64, sorted by key hash."""
    rows = sorted((stable_hash(key), offset) for key, offset in pairs)
    table = np.array(rows, dtype=np.uint64).reshape(-1, 2).T.copy()
    tmp = path.with_name(path.name[: -len(".npy")] + ".tmp.npy")
    np.save(tmp, table)
    tmp.replace(path)


class Tables:
    """Memory-mapped look-up tables, the most recently used kept open."""

    def __init__(self, size: int = 2048):  # a mapped table costs address space, not memory
        self._open: OrderedDict[Path, tuple[np.ndarray, np.ndarray] | None] = OrderedDict()
        self.size = size

    def get(self, path: Path, key: str) -> list[int]:
        """The numbers stored under `key` ([] when none or the table does not exist)."""
        if path in self._open:
            self._open.move_to_end(path)
        else:
            self._open[path] = _map(path)
            if len(self._open) > self.size:
                self._open.popitem(last=False)
        table = self._open[path]
        if table is None:
            return []
        hashes, values = table
        h = np.uint64(stable_hash(key))
        lo = int(hashes.searchsorted(h, "left"))
        if lo == len(hashes) or hashes[lo] != h:
            return []
        return [int(o) for o in values[lo : int(hashes.searchsorted(h, "right"))]]


def _map(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A table's two rows as plain arrays over the mapped file (numpy's memmap subclass costs a
    Python call per slice), None when it does not exist or is empty."""
    if not path.exists():
        return None
    table = np.asarray(np.load(path, mmap_mode="r"))
    return (table[0], table[1]) if table.shape[1] else None


def read_line(path: Path, offset: int) -> dict:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return json.loads(handle.readline())
