"""On-disk look-up tables: key -> integers, found by binary search without reading a table whole.

A table is two rows of uint64 (a stable 64-bit hash of each key, a number stored under it),
sorted by hash, saved with numpy (`*.table.npy`). A look-up finds the key's block through a
fence kept in memory, reads that block (nothing is read whole, nothing is mapped) and returns
every number stored under the hash, in order. Most tables store the byte offset of the key's
line in a JSONL file: callers read the line there (`Tables.line`) and check it is the key's
(two keys sharing a 64-bit hash are possible in principle); the entity memory's membership
tables store counts.
Used by the entity memory (data_synthesis/engine/memory_store.py) and the search index's page
look-up (data_synthesis/environment/index.py), so neither keeps a dict that grows with the
corpus. Beside the tables: `every` reads a fence of any on-disk array a chunk at a time (also
the search postings' fences), and `SizedCache` is the size-bounded LRU those callers share.
"""

from __future__ import annotations

import json
import os
import shutil
import weakref
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from data_synthesis.engine.io import (
    IN_FRAME_BITS,
    NpyWriter,
    framed_line,
    read_frame,
    stable_hash,
    zstd_named,
)
from data_synthesis.engine.sort import KEY, SortedRuns
from megatron_agentic.data.checks import npy_header


def write_table(path: Path, pairs) -> None:
    """A look-up table: (key, number) pairs as two rows of uint64, sorted by key hash."""
    pairs = list(pairs)
    keys, values = zip(*pairs) if pairs else ((), ())
    hashes = np.fromiter(map(stable_hash, keys), dtype=np.uint64, count=len(keys))
    write_hashed_table(path, hashes, np.array(values, dtype=np.uint64))


def write_hashed_table(path: Path, hashes: np.ndarray, values: np.ndarray) -> None:
    """A look-up table of keys already hashed (stable_hash): two rows of uint64, sorted by
    (hash, value), written a row at a time (the file np.save writes, without a copy of the
    whole table in memory)."""
    hashes, values = np.asarray(hashes, np.uint64), np.asarray(values, np.uint64)
    order = np.lexsort((values, hashes))
    tmp = path.with_name(path.name[: -len(".npy")] + ".tmp.npy")
    table = NpyWriter(tmp, np.uint64)
    table.write(hashes[order])
    table.write(values[order])
    table.close((2, len(order)))
    tmp.replace(path)


def in_table_order(blocks: Iterable[tuple[np.ndarray, np.ndarray]]):
    """(hashes, numbers) blocks in hash order, as blocks in (hash, number) order (the order
    write_hashed_table writes): the rows of a block's last hash wait for the next block, since a
    key's rows may straddle blocks and SortedRuns keeps no order among equal keys."""
    held = (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
    for hashes, numbers in blocks:
        hashes = np.concatenate([held[0], hashes])
        numbers = np.concatenate([held[1], np.asarray(numbers, np.uint64)])
        if not len(hashes):
            continue
        cut = int(hashes.searchsorted(hashes[-1], "left"))
        if cut:
            order = np.lexsort((numbers[:cut], hashes[:cut]))
            yield hashes[:cut][order], numbers[:cut][order]
        held = (hashes[cut:], numbers[cut:])
    if len(held[0]):
        order = np.argsort(held[1], kind="stable")
        yield held[0][order], held[1][order]


class HashedTableWriter:
    """write_hashed_table's file from more pairs than a task should hold: pairs are added one
    at a time in any order, sorted in runs on disk CHUNK at a time (engine/sort.py) and written
    from their merge, the hashes and then the values (two passes), in about CHUNK pairs and
    MEMORY bytes.
    Pairs of one hash keep no promised order among themselves (a look-up returns them all)."""

    CHUNK = 1 << 20  # pairs held before they are sorted into a run (16 MiB)
    MEMORY = 32 << 20  # the merge's buffers (engine/sort.py)

    def __init__(self, path: Path):
        self.path = Path(path)
        self._work = self.path.with_name(self.path.name + ".runs")
        shutil.rmtree(self._work, ignore_errors=True)  # a killed task's
        self._runs = SortedRuns(self._work, {"value": "uint64"}, self.MEMORY)
        self._hashes, self._values = array("Q"), array("Q")

    def add(self, hashed: int, value: int) -> None:
        self._hashes.append(hashed)
        self._values.append(value)
        if len(self._hashes) >= self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        hashes = np.frombuffer(self._hashes, np.uint64)  # add() writes its run at once
        self._runs.add(hashes, value=np.frombuffer(self._values, np.uint64))
        self._hashes, self._values = array("Q"), array("Q")  # a viewed array cannot grow

    def close(self) -> None:
        self._flush()
        tmp = self.path.with_name(self.path.name[: -len(".npy")] + ".tmp.npy")
        table = NpyWriter(tmp, np.uint64)
        for column in (KEY, "value"):
            for block in self._runs.merged():
                table.write(block[column])
        table.close((2, self._runs.rows))
        tmp.replace(self.path)
        shutil.rmtree(self._work)


BLOCK = 512  # hashes per block: one 4 KiB read finds a key once its block is known
FILES_OPEN = 64  # files a Tables keeps open
LINE_READ = 4096  # bytes read at a time for a line (doubling until its end)
# text of the framed files' frames a Tables keeps: ~64 frames (a large one, a common value's
# entity list, stays only until the next frame is read)
FRAME_CACHE_BYTES = 1 << 20


class Tables:
    """Look-up tables opened on first use, the most recently used kept (their block fences),
    and the files they and their rows lie in, kept open.

    A look-up binary-searches the table's fence (the first hash of every BLOCK, held in
    memory: 1/512 of the table), then reads that block of hashes and, on a hit, the values
    with pread. Memory-mapping the tables instead made a task's RSS grow with the number of
    tables it touched: every page fault maps up to 16 neighbouring pages (fault-around), and a
    binary search faults on about 8 pages. The last FILES_OPEN files read are kept open (an
    open and a close cost about as much as the look-up itself); the rest are closed, so a task
    that touches thousands of tables stays within its open-files limit."""

    def __init__(self, size: int = 4096, files: int = FILES_OPEN):
        self._open = SizedCache(size, lambda table: 1)
        self._files = SizedCache(files, lambda fd: 1, drop=os.close)
        self._frames = SizedCache(FRAME_CACHE_BYTES, len)  # (path, start) -> frame text
        weakref.finalize(self, self._files.clear)

    def get(self, path: Path, key: str) -> list[int]:
        """The numbers stored under `key` ([] when none or the table does not exist)."""
        table = self._table(path)
        return table.get(stable_hash(key), self._fd(path)) if table is not None else []

    def span(self, path: Path, key: str) -> tuple[int, int]:
        """The rows [lo, hi) of `path` holding `key`, to read in part (`between`) when a key holds
        many numbers ((0, 0) when none or the table does not exist)."""
        table = self._table(path)
        return table.span(stable_hash(key), self._fd(path)) if table is not None else (0, 0)

    def values(self, path: Path, lo: int, hi: int) -> list[int]:
        """The numbers of rows [lo, hi) of `path` (a `span`)."""
        return self._table(path).values(self._fd(path), lo, hi).tolist() if hi > lo else []

    def between(self, path: Path, lo: int, hi: int, low: int, high: int) -> list[int]:
        """The numbers of rows [lo, hi) of `path` (a `span`) in [low, high), for a table
        sorted by (hash, number) (write_hashed_table's; the search index's terms table)."""
        if hi <= lo:
            return []
        return self._table(path).between(self._fd(path), lo, hi, low, high).tolist()

    def _table(self, path: Path) -> _Table | None:
        return self._open.get(path, lambda: _Table.open(path))

    def line(self, path: Path, offset: int) -> dict:
        """The JSON line that starts at byte `offset` of `path`, or at place `offset` of a
        framed `.jsonl.zst` (engine/io.py's FramedLines; its most recent frames kept)."""
        if zstd_named(path):
            start = offset >> IN_FRAME_BITS
            text = self._frames.get((str(path), start), lambda: self._frame(path, start))
            return json.loads(framed_line(text, offset))
        fd, size, chunks = self._fd(path), LINE_READ, []
        while True:
            chunk = os.pread(fd, size, offset)
            end = chunk.find(b"\n")
            chunks.append(chunk if end < 0 else chunk[:end])
            if end >= 0 or len(chunk) < size:
                return json.loads(b"".join(chunks))
            offset, size = offset + len(chunk), size * 2

    def read(self, path: Path, offset: int, length: int) -> bytes:
        """`length` bytes of `path` from byte `offset`."""
        return os.pread(self._fd(path), length, offset)

    def _fd(self, path: Path) -> int:
        return self._files.get(str(path), lambda: os.open(path, os.O_RDONLY))

    def _frame(self, path: Path, start: int) -> bytes:
        return read_frame(partial(os.pread, self._fd(path)), start, path)


class SizedCache:
    """The most recently used values, the oldest dropped once their summed `size` passes
    `limit` (a size per value: records, lists and fences vary by orders of magnitude)."""

    def __init__(self, limit: int, size, drop=None):
        self._items: OrderedDict = OrderedDict()
        self._total, self.limit, self.size = 0, limit, size
        self._drop = drop or (lambda value: None)  # called on each value dropped

    def get(self, key, make):
        """The cached value of `key`, or make()'s, kept."""
        try:
            self._items.move_to_end(key)  # a kept key (the usual case): two look-ups, not three
        except KeyError:
            value = self._items[key] = make()
        else:
            return self._items[key]
        self._total += self.size(value)
        while self._total > self.limit and len(self._items) > 1:
            dropped = self._items.popitem(last=False)[1]
            self._total -= self.size(dropped)
            self._drop(dropped)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        while self._items:
            self._drop(self._items.popitem()[1])
        self._total = 0


@dataclass
class _Table:
    """Where a table's rows lie in its .npy file, and its fence."""

    offset: int  # byte offset of the hash row; the value row follows it
    rows: int
    fence: np.ndarray  # hashes[::BLOCK]

    @classmethod
    def open(cls, path: Path) -> _Table | None:
        """None when the table does not exist or is empty."""
        if not path.exists():
            return None
        shape, fortran, dtype, offset = npy_header(path)
        if dtype != np.uint64 or len(shape) != 2 or shape[0] != 2 or fortran:
            raise ValueError(f"{path}: not a look-up table (shape {shape}, dtype {dtype})")
        if not shape[1]:
            return None

        def read(start: int, stop: int) -> np.ndarray:
            return np.fromfile(path, dtype=np.uint64, count=stop - start, offset=offset + start * 8)

        return cls(offset, shape[1], every(read, 0, shape[1], BLOCK))

    def get(self, key_hash: int, fd: int) -> list[int]:
        """The numbers under `key_hash`, read from `fd` (this table's file, open)."""
        return self.values(fd, *self.span(key_hash, fd)).tolist()

    def span(self, key_hash: int, fd: int) -> tuple[int, int]:
        """The rows [lo, hi) holding `key_hash`: the blocks of its first and last rows are read,
        not those between (a key stored thousands of times spans many blocks)."""
        h = np.uint64(key_hash)
        first = max(int(self.fence.searchsorted(h, "left")) - 1, 0)
        last = max(int(self.fence.searchsorted(h, "right")) - 1, first)
        block = self._hashes(fd, first)
        lo = first * BLOCK + int(block.searchsorted(h, "left"))
        if last != first:
            block = self._hashes(fd, last)
        hi = last * BLOCK + int(block.searchsorted(h, "right"))
        return lo, max(lo, hi)

    def values(self, fd: int, start: int, stop: int) -> np.ndarray:
        at = self.offset + (self.rows + start) * 8
        return np.frombuffer(os.pread(fd, (stop - start) * 8, at), np.uint64)

    def between(self, fd: int, lo: int, hi: int, low: int, high: int) -> np.ndarray:
        """The numbers of rows [lo, hi) (one key's, sorted: write_hashed_table's order) in
        [low, high): a binary search on disk, then a block read, however many rows."""
        return self.values(fd, self._bisect(fd, lo, hi, low), self._bisect(fd, lo, hi, high))

    def _bisect(self, fd: int, lo: int, hi: int, value: int) -> int:
        """The first row of [lo, hi) whose number is >= value."""
        while hi - lo > BLOCK:
            mid = (lo + hi) // 2
            if int(self.values(fd, mid, mid + 1)[0]) < value:
                lo = mid + 1
            else:
                hi = mid
        return lo + int(self.values(fd, lo, hi).searchsorted(np.uint64(value), "left"))

    def _hashes(self, fd: int, block: int) -> np.ndarray:
        start = block * BLOCK
        count = max(0, min(BLOCK, self.rows - start))
        return np.frombuffer(os.pread(fd, count * 8, self.offset + start * 8), np.uint64)


def every(read, start: int, stop: int, step: int, steps_per_read: int = 4096) -> np.ndarray:
    """array[start:stop:step] of an on-disk array, `read(a, b)` giving array[a:b]: read a chunk
    at a time, so building a fence never holds the whole array (a 1 GB corpus's page table is
    28 MB; a common term's postings, megabytes)."""
    size = step * steps_per_read
    parts = [read(a, min(a + size, stop))[::step] for a in range(start, stop, size)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
