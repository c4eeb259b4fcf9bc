"""External merge sort of uint64 keys carrying payload columns, in bounded memory.

`SortedRuns` takes rows a chunk at a time, sorts each chunk and writes it to disk as a run (one
raw file per column), and `merged()` reads the runs back a block per run at a time, yielding
blocks of rows in key order. More runs than `fan_in` are first merged in groups into longer runs
(as many passes as needed), so a merge works in about `memory` bytes whatever the number of
rows: a step's read buffers and the block it sorts from them (its rows concatenated, their order
and the sorted copy: the buffers are a third of `memory`). A run is read at least MIN_BLOCK rows
at a time (fewer reads cost more than the memory saved), so a small `memory` lowers the fan-in
instead: until 2026-12-05 64 runs were merged at once whatever `memory` said. Rows with equal
keys come out together but in no promised order.

Used by the search index build (data_synthesis/environment/build.py): the postings, keyed by
(term, passage), and the page table, keyed by the hash of a document's id or url, are sorted this
way, so building the index of a corpus never holds the corpus's postings or pages in memory.

`DistinctRows` does the same for rows of strings: the memory reduce's value index rows
(data_synthesis/engine/memory_store.py), which it held as one set per partition, and a hub
entity's value index keys (data_synthesis/memory.py), which grow with the corpus.
"""

from __future__ import annotations

import heapq
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np

KEY = "key"
MIN_BLOCK = 1024  # rows read from a run at a time, at least


class SortedRuns:
    """Sorted runs of rows (a uint64 `key` and the payload `columns`) under `directory`."""

    def __init__(
        self, directory: Path, columns: dict[str, str], memory: int = 32 << 20, fan_in: int = 64
    ):
        if fan_in < 2:
            raise ValueError(f"fan_in must be at least 2, got {fan_in}")
        self.directory, self.memory = Path(directory), memory
        self.dtypes = {KEY: np.dtype(np.uint64), **{n: np.dtype(d) for n, d in columns.items()}}
        most = memory // (3 * MIN_BLOCK * self._width)  # runs whose blocks fit in `memory`
        self.fan_in = max(2, min(fan_in, most))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._runs: list[tuple[Path, int]] = []  # (run directory, rows)
        self._made = 0
        self.rows = 0

    @classmethod
    def reopen(cls, directory: Path, columns: dict[str, str], memory: int):
        """The runs another process wrote under `directory` (a sharded index build's pass 1
        and pass 2 run as separate tasks)."""
        runs = cls(directory, columns, memory)
        for path in sorted(runs.directory.glob("run*")):
            rows = (path / f"{KEY}.bin").stat().st_size // runs.dtypes[KEY].itemsize
            runs._runs.append((path, rows))
            runs.rows += rows
        runs._made = 1 + max((int(path.name[3:]) for path, _ in runs._runs), default=-1)
        return runs

    def add(self, keys: np.ndarray, **columns: np.ndarray) -> None:
        """One chunk of rows, in any order (an empty chunk writes nothing)."""
        if not len(keys):
            return
        order = np.argsort(keys, kind="stable")
        self._write({KEY: keys[order], **{n: c[order] for n, c in columns.items()}})

    def merged(self) -> Iterator[dict[str, np.ndarray]]:
        """Every row once, in blocks whose keys never decrease from one block to the next."""
        self.compact()
        yield from _merge(self._runs, self.dtypes, self._block_rows(len(self._runs)))

    def compact(self) -> None:
        """Merge runs in groups until at most `fan_in` are left (then `merged()` only reads)."""
        while len(self._runs) > self.fan_in:
            groups = [
                self._runs[i : i + self.fan_in] for i in range(0, len(self._runs), self.fan_in)
            ]
            self._runs = []
            for group in groups:
                if len(group) == 1:
                    self._runs.append(group[0])
                    continue
                with _RunWriter(self._new_run(), self.dtypes) as writer:
                    for block in _merge(group, self.dtypes, self._block_rows(len(group))):
                        writer.write(block)
                self._runs.append((writer.path, writer.rows))
                for path, _ in group:
                    shutil.rmtree(path)

    @property
    def _width(self) -> int:
        return sum(d.itemsize for d in self.dtypes.values())

    def _block_rows(self, runs: int) -> int:
        return max(MIN_BLOCK, self.memory // (3 * max(runs, 1) * self._width))

    def _new_run(self) -> Path:
        path = self.directory / f"run{self._made:06d}"
        self._made += 1
        path.mkdir()
        return path

    def _write(self, block: dict[str, np.ndarray]) -> None:
        with _RunWriter(self._new_run(), self.dtypes) as writer:
            writer.write(block)
        self._runs.append((writer.path, writer.rows))
        self.rows += writer.rows


class _RunWriter:
    """Appends sorted blocks to one run's column files."""

    def __init__(self, path: Path, dtypes: dict[str, np.dtype]):
        self.path, self.dtypes, self.rows = path, dtypes, 0
        self._files = {name: open(path / f"{name}.bin", "wb") for name in dtypes}  # noqa: SIM115

    def write(self, block: dict[str, np.ndarray]) -> None:
        for name, dtype in self.dtypes.items():
            self._files[name].write(np.ascontiguousarray(block[name], dtype=dtype).data)
        self.rows += len(block[KEY])

    def __enter__(self) -> _RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._files.values():
            handle.close()


class _RunReader:
    """A run read back a block at a time; `buffer` holds the rows read and not yet taken."""

    def __init__(self, path: Path, rows: int, dtypes: dict[str, np.dtype], block_rows: int):
        self.path, self.rows, self.dtypes, self.block_rows = path, rows, dtypes, block_rows
        self.next_row = 0
        self.buffer: dict[str, np.ndarray] = {n: np.zeros(0, d) for n, d in dtypes.items()}

    def fill(self) -> None:
        """Read the next block if the buffer is empty."""
        if len(self.buffer[KEY]) or self.next_row >= self.rows:
            return
        count = min(self.block_rows, self.rows - self.next_row)
        self.buffer = {
            name: np.fromfile(
                os.path.join(self.path, f"{name}.bin"),
                dtype=dtype,
                count=count,
                offset=self.next_row * dtype.itemsize,
            )
            for name, dtype in self.dtypes.items()
        }
        self.next_row += count

    def take(self, bound: np.uint64) -> dict[str, np.ndarray]:
        """The buffered rows with keys <= bound (removed from the buffer)."""
        cut = int(np.searchsorted(self.buffer[KEY], bound, side="right"))
        taken = {n: c[:cut] for n, c in self.buffer.items()}
        self.buffer = {n: c[cut:] for n, c in self.buffer.items()}
        return taken

    @property
    def done(self) -> bool:
        return not len(self.buffer[KEY]) and self.next_row >= self.rows


def _merge(
    runs: list[tuple[Path, int]], dtypes, block_rows: int
) -> Iterator[dict[str, np.ndarray]]:
    """Blocks of the runs' rows in key order. Each step takes, from every run, the buffered rows
    up to the smallest last buffered key: every row not yet buffered has a larger or equal key,
    so the step's rows all come before (or tie with) everything after them."""
    readers = [_RunReader(path, rows, dtypes, block_rows) for path, rows in runs]
    while True:
        for reader in readers:
            reader.fill()
        live = [reader for reader in readers if not reader.done]
        if not live:
            return
        bound = min(reader.buffer[KEY][-1] for reader in live)
        parts = [reader.take(bound) for reader in live]
        block = {name: np.concatenate([part[name] for part in parts]) for name in dtypes}
        order = np.argsort(block[KEY], kind="stable")
        yield {name: column[order] for name, column in block.items()}


class DistinctRows:
    """Distinct rows (tuples of strings and numbers) in sorted order, in bounded memory: held
    as a set up to `rows`, then sorted and written as a run (pickled blocks of RUN_BLOCK rows)
    to an anonymous temporary file (under TMPDIR, gone when closed or on a crash);
    `sorted()` yields every distinct row once, merging the runs a block at a time. Runs past
    `fan_in` are merged into one first, so the files open at once stay few."""

    ROWS = 1 << 17  # held in memory: about 30 MB of value index rows

    def __init__(self, rows: int = 0, fan_in: int = 64):
        self.limit, self.fan_in = rows or self.ROWS, fan_in
        self.items: set[tuple] = set()
        self.runs: list = []

    def add(self, row: tuple) -> None:
        self.items.add(row)
        if len(self.items) >= self.limit:
            self.runs.append(_run(sorted(self.items)))
            self.items = set()
            if len(self.runs) >= self.fan_in:
                self.runs = [_run(self.sorted())]

    def merge(self, other: DistinctRows) -> None:
        for row in other:
            self.add(row)

    def __iter__(self) -> Iterator[tuple]:
        """Every row, in no order: one spilled twice comes twice."""
        yield from self.items
        for run in self.runs:
            yield from _rows(run)

    def sorted(self) -> Iterator[tuple]:
        streams = [sorted(self.items), *(_rows(run) for run in self.runs)]
        last = None
        for row in heapq.merge(*streams):
            if row != last:
                yield row
                last = row


RUN_BLOCK = 4096


def _run(rows) -> object:
    run = tempfile.TemporaryFile()
    rows = iter(rows)
    while block := list(islice(rows, RUN_BLOCK)):
        pickle.dump(block, run, pickle.HIGHEST_PROTOCOL)
    return run


def _rows(run) -> Iterator[tuple]:
    run.seek(0)
    end = os.fstat(run.fileno()).st_size
    while run.tell() < end:
        yield from pickle.load(run)
