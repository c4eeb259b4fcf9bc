"""On-disk look-up tables: key -> byte offsets, found by binary search in a memory-mapped array.

A table is two rows of uint64 (a stable 64-bit hash of each key, the byte offset of its line),
sorted by hash, saved with numpy (`*.table.npy`). A look-up maps the table (nothing is read
whole), binary-searches the hash and returns every offset stored under it, in offset order;
callers read the line there and check it is the key's (two keys sharing a 64-bit hash are
possible in principle). Used by the entity memory (data_synthesis/engine/memory_store.py) and
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
    """A look-up table: (key, byte offset) pairs as two rows of uint64, sorted by key hash."""
    rows = sorted((stable_hash(key), offset) for key, offset in pairs)
    table = np.array(rows, dtype=np.uint64).reshape(-1, 2).T.copy()
    tmp = path.with_name(path.name[: -len(".npy")] + ".tmp.npy")
    np.save(tmp, table)
    tmp.replace(path)


class Tables:
    """Memory-mapped look-up tables, the most recently used kept open."""

    def __init__(self, size: int = 2048):  # a mapped table costs address space, not memory
        self._open: OrderedDict[Path, np.ndarray | None] = OrderedDict()
        self.size = size

    def offsets(self, path: Path, key: str) -> list[int]:
        if path in self._open:
            self._open.move_to_end(path)
        else:
            self._open[path] = np.load(path, mmap_mode="r") if path.exists() else None
            if len(self._open) > self.size:
                self._open.popitem(last=False)
        table = self._open[path]
        if table is None or table.shape[1] == 0:
            return []
        h = np.uint64(stable_hash(key))
        lo, hi = np.searchsorted(table[0], h, "left"), np.searchsorted(table[0], h, "right")
        return [int(o) for o in table[1][lo:hi]]


def read_line(path: Path, offset: int) -> dict:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return json.loads(handle.readline())
