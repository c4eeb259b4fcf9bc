"""The shuffle between a stage's tasks and the next stage's partitions: one file per task.

A task that sends rows to many partitions writes them into one file, grouped by partition in
ascending order, after a header of byte offsets (MAGIC, the partition count and partitions + 1
uint64 offsets from the end of the header: partition p's rows are bytes [offset[p],
offset[p + 1]) of what follows it). A partition's reader takes its range from each task's
file, in task order, so it sees the rows exactly as a file per (task, partition) would have
held them. The offsets are in the file itself, so a reader opens one file per range: they
were a `.index.npy` beside it until 2026-12-05, two opens per range (at 1 TB the value index
stage reads 16.8M ranges, the memory reduce as many). `ShuffleFile` reads several ranges of a
file in one open (a value_index task's value and relation rows of a reduce task).

Why not a file per (task, partition): that makes tasks x partitions files and a writer with a
file open per partition. The 1 TB plan (1,024 map tasks, 16,384 partitions) would have written
16.8M statement files, with every map task holding 16,384 files open - past the usual
open-files limit of a cluster's jobs (1,024 or 4,096) - and 16,384 x 16,384 = 268M value-index
files from the reduce tasks. One file per task is how sort-based shuffles (Spark's, Hadoop's
map output) keep the count at 2 x tasks.

`ShuffleWriter` takes rows for partitions in any order, buffers up to `memory` bytes and spills
them as runs grouped the same way; `commit` joins the runs range by range. `write_grouped`
writes rows that already come in partition order (the reduce tasks' index rows) straight to
the file. Both write under a temporary name and fill the header in last, then rename the
file: a killed task leaves no file under its final name.

A file named `*.zst` is compressed (ShuffleWriter): each run's rows of a partition are one zstd
frame, so joining runs still copies byte ranges (frames concatenate) and a partition's range is
read back through one streaming decompressor. The memory's statements are written so: the
largest intermediate (3.5x the input as JSON, 4.1 TB of the 1 TB plan's disk), written once
and read once in order, and 15% of that size compressed (a 1 GB run's map file, at ~580 MB/s).
Rows that a reader merges side by side (the value index's) stay plain: a decompressor per file
would hold a window per file.
"""

from __future__ import annotations

import os
import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import zstandard

from data_synthesis.engine.io import ZSTD_LEVEL, zstd_named

COPY_BLOCK = 8 << 20  # bytes copied at a time when runs are joined
READ_MEMORY = 16 << 20  # read buffers of all the files a merge reads at once
MAGIC = b"SHUFFLE1"
_COUNT = struct.Struct("<8sQ")  # MAGIC, partitions


def header_size(partitions: int) -> int:
    return _COUNT.size + 8 * (partitions + 1)


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _commit(path: Path, data_tmp: Path, sizes: np.ndarray) -> None:
    """Fill in the header of `data_tmp` (its space reserved) and give it its final name."""
    offsets = np.zeros(len(sizes) + 1, np.uint64)
    np.cumsum(sizes, out=offsets[1:])
    with open(data_tmp, "r+b", buffering=0) as handle:
        os.pwrite(handle.fileno(), _COUNT.pack(MAGIC, len(sizes)) + offsets.tobytes(), 0)
    data_tmp.replace(path)


def write_grouped(path: Path, partitions: int, rows: Iterable[tuple[int, bytes]]) -> None:
    """Write `rows` ((partition, bytes), partitions ascending) as a task's (plain) shuffle file."""
    path = Path(path)
    if zstd_named(path):
        raise ValueError(f"{path}: write_grouped writes plain files")
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = np.zeros(partitions, np.uint64)
    last = -1
    with open(_tmp(path), "wb") as handle:
        handle.write(bytes(header_size(partitions)))
        for partition, data in rows:
            if partition < last:
                raise ValueError(f"{path}: partition {partition} written after {last}")
            last = partition
            handle.write(data)
            sizes[partition] += len(data)
    _commit(path, _tmp(path), sizes)


class ShuffleWriter:
    """A task's shuffle file from rows for partitions in any order, in about `memory` bytes;
    compressed when its name ends in `.zst`."""

    def __init__(self, path: Path, partitions: int, memory: int = 64 << 20):
        self.path, self.partitions, self.memory = Path(path), partitions, memory
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL) if zstd_named(path) else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in [_tmp(self.path), *self.path.parent.glob(self.path.name + ".run*.tmp")]:
            stale.unlink(missing_ok=True)  # left by a killed run of this task
        self._buffers: dict[int, list[bytes]] = defaultdict(list)
        self._buffered = 0
        self._runs: list[tuple[Path, np.ndarray]] = []  # (run file, bytes per partition)

    def write(self, partition: int, data: bytes) -> None:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"{self.path}: partition {partition} not in [0, {self.partitions})")
        self._buffers[partition].append(data)
        self._buffered += len(data)
        if self._buffered >= self.memory:
            self._spill()

    def _spill(self) -> None:
        run = self.path.with_name(f"{self.path.name}.run{len(self._runs)}.tmp")
        sizes = np.zeros(self.partitions, np.uint64)
        with open(run, "wb") as handle:
            handle.write(bytes(header_size(self.partitions)))  # the file itself, if one run
            for partition in sorted(self._buffers):
                data = b"".join(self._buffers[partition])
                if self._zstd:
                    data = self._zstd.compress(data)
                handle.write(data)
                sizes[partition] = len(data)
        self._runs.append((run, sizes))
        self._buffers.clear()
        self._buffered = 0

    def commit(self) -> None:
        if self._buffered or not self._runs:
            self._spill()
        if len(self._runs) == 1:
            run, sizes = self._runs[0]
            _commit(self.path, run, sizes)
            return
        header = header_size(self.partitions)
        starts = [
            header + np.concatenate([np.zeros(1, np.uint64), sizes.cumsum()])
            for _, sizes in self._runs
        ]
        total = sum(sizes for _, sizes in self._runs)
        files = [open(run, "rb", buffering=0) for run, _ in self._runs]  # noqa: SIM115
        try:
            with open(_tmp(self.path), "wb") as out:
                out.write(bytes(header))
                for partition in np.flatnonzero(total).tolist():
                    for handle, start in zip(files, starts):
                        _copy(handle, out, int(start[partition]), int(start[partition + 1]))
        finally:
            for handle in files:
                handle.close()
        _commit(self.path, _tmp(self.path), total)
        for run, _ in self._runs:
            run.unlink()

    def __enter__(self) -> ShuffleWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._buffers.clear()


def _copy(source, target, start: int, stop: int) -> None:
    while start < stop:
        data = os.pread(source.fileno(), min(COPY_BLOCK, stop - start), start)
        target.write(data)
        start += len(data)


def shuffle_files(folder: Path, pattern: str = "*.jsonl") -> list[Path]:
    """The tasks' committed shuffle files in `folder`, in task order."""
    folder = Path(folder)
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


class ShuffleFile:
    """One task's shuffle file, read a range at a time. Its header's partition count is read
    once. With `hold` the file stays open from its first read to `close()`, so the ranges of
    several partitions cost one open (a value_index task reads a reduce task's value rows, then
    its relation rows). Without it the file is open only while the header and a block are
    read: a merge of more files than the open-files limit allows."""

    def __init__(self, path: Path, hold: bool = True):
        self.path, self.hold = Path(path), hold
        self._handle = None
        self._partitions = 0

    def _fd(self) -> int:
        if self._handle is None:
            self._handle = open(self.path, "rb", buffering=0)  # noqa: SIM115 - see close()
        return self._handle.fileno()

    def _release(self) -> None:
        if not self.hold:
            self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ShuffleFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def span(self, partition: int) -> tuple[int, int]:
        """Partition `partition`'s byte range, from the header (the file left open)."""
        fd = self._fd()
        if not self._partitions:
            head = os.pread(fd, _COUNT.size, 0)
            if len(head) < _COUNT.size or head[:8] != MAGIC:
                raise ValueError(f"{self.path}: not a shuffle file (no {MAGIC.decode()} header)")
            self._partitions = _COUNT.unpack(head)[1]
        if not 0 <= partition < self._partitions:
            raise ValueError(f"{self.path}: partition {partition} not in [0, {self._partitions})")
        offsets = np.frombuffer(os.pread(fd, 16, _COUNT.size + 8 * partition), np.uint64)
        start, stop = (header_size(self._partitions) + int(o) for o in offsets)
        return start, stop

    def read(self, partition: int) -> bytes:
        """Partition `partition`'s bytes, read whole."""
        try:
            start, stop = self.span(partition)
            data = os.pread(self._fd(), stop - start, start) if stop > start else b""
        finally:
            self._release()
        if len(data) != stop - start:
            raise EOFError(
                f"{self.path}: {stop - start - len(data)} bytes missing at offset {start}"
            )
        return data

    def blocks(self, partition: int, block: int) -> Iterator[bytes]:
        """Partition `partition`'s bytes, `block` at a time (decompressed, for a `.zst` file:
        at most `block` bytes of text each, whatever the compression ratio); the header and
        the first block are read in one open when the file is not held."""
        try:
            start, stop = self.span(partition)
            source = _RangeSource(self, start, stop)
            if zstd_named(self.path):
                inflate = zstandard.ZstdDecompressor().stream_reader(
                    source, read_size=block, read_across_frames=True, closefd=False
                )
                while more := inflate.read(block):
                    yield more
            else:
                while more := source.read(block):
                    yield more
        finally:
            self._release()

    def lines(self, partition: int, block: int = 1 << 20) -> Iterator[bytes]:
        """Partition `partition`'s lines, read `block` bytes at a time and cut one at a time."""
        data, at = b"", 0
        for more in self.blocks(partition, block):
            data, at = data[at:] + more, 0
            while (end := data.find(b"\n", at)) >= 0:
                yield data[at:end]
                at = end + 1
        if at < len(data):
            raise ValueError(f"{self.path}: partition {partition} does not end with a newline")


class _RangeSource:
    """Bytes [start, stop) of a ShuffleFile as a file-like `read` (zstd's stream reader reads
    from it), one pread per call."""

    def __init__(self, file: ShuffleFile, start: int, stop: int):
        self.file, self.at, self.stop = file, start, stop

    def read(self, size: int = -1) -> bytes:
        size = self.stop - self.at if size < 0 else min(size, self.stop - self.at)
        if size <= 0:
            return b""
        more = os.pread(self.file._fd(), size, self.at)
        self.file._release()
        if not more:
            raise EOFError(
                f"{self.file.path}: {self.stop - self.at} bytes missing at offset {self.at}"
            )
        self.at += len(more)
        return more


def partition_range(path: Path, partition: int) -> tuple[int, int]:
    with ShuffleFile(path) as file:
        return file.span(partition)


def partition_bytes(path: Path, partition: int) -> bytes:
    """Partition `partition`'s bytes in one task's file, read whole (one open)."""
    with ShuffleFile(path) as file:
        return file.read(partition)


def partition_lines(
    path: Path, partition: int, block: int = 1 << 20, hold: bool = False
) -> Iterator[bytes]:
    """Partition `partition`'s lines in one task's file, read `block` bytes at a time and cut
    one line at a time; a merge of thousands of tasks' files holds about a block per file.
    The file is open while its header and first block are read and then only while a block
    is read, unless `hold` (a read of one file after another, or a merge whose open-files
    limit allows a file per stream): then from the header to the range's last block, one
    open per range instead of one per block. Closed once the range is read."""
    with ShuffleFile(path, hold) as file:
        yield from file.lines(partition, block)


def merge_block(files: int) -> int:
    """The read block for a merge of `files` files at once: READ_MEMORY in all, 4 to 64 KB."""
    return max(4096, min(1 << 16, READ_MEMORY // max(1, files)))
