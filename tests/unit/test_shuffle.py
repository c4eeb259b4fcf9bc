"""The shuffle's one file per task (data_synthesis/engine/shuffle.py): every partition reads back
exactly the rows written to it, in order, whatever the spills; a writer keeps no file per
partition open; a killed writer leaves no file under its final name."""

from __future__ import annotations

import os
import random

import pytest
import zstandard

from data_synthesis.engine.shuffle import (
    ShuffleWriter,
    header_size,
    partition_lines,
    partition_range,
    shuffle_files,
    write_grouped,
)


def _rows(seed: int, partitions: int, n: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    return [
        (rng.randrange(partitions), f"row {i} {'x' * rng.randrange(40)}".encode()) for i in range(n)
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.zst"])  # plain; zstd frames
@pytest.mark.parametrize("memory", [1 << 20, 2_000])  # one run; dozens of spilled runs
def test_each_partition_reads_back_its_rows_in_order(tmp_path, memory, suffix):
    partitions, rows = 50, _rows(0, 50, 3_000)
    for task in range(3):
        with ShuffleWriter(tmp_path / f"t{task:05d}{suffix}", partitions, memory) as writer:
            for p, data in rows[task::3]:
                writer.write(p, data + b"\n")
            writer.commit()
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(
        f"t{t:05d}{suffix}" for t in range(3)
    )  # one file per task (the offsets in its header), no run left behind
    files = shuffle_files(tmp_path, f"*{suffix}")
    written = sum(len(data) + 1 for _, data in rows)
    stored = sum(f.stat().st_size - header_size(partitions) for f in files)
    if suffix == ".jsonl":
        assert stored == written
    elif memory > written:  # one frame per partition (spilled runs make many small frames)
        assert stored < written / 2
    assert partition_range(files[0], partitions - 1)[1] == files[0].stat().st_size
    with pytest.raises(ValueError, match=f"partition {partitions} not in"):
        partition_range(files[0], partitions)
    for p in range(partitions):
        expected = [data for task in range(3) for q, data in rows[task::3] if q == p]
        got = [line for path in files for line in partition_lines(path, p, block=7)]
        assert got == expected, p
        held = [line for path in files for line in partition_lines(path, p, 7, hold=True)]
        assert held == expected, p


def test_a_writer_holds_no_file_per_partition(tmp_path):
    """2,000 partitions written in turn: the file-per-(task, partition) writer this replaced held
    2,000 files open (past a cluster's usual limit of 1,024); this one holds none between spills."""

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    with ShuffleWriter(tmp_path / "t00000.jsonl", 2_000, memory=50_000) as writer:
        most = 0
        for p, data in _rows(1, 2_000, 20_000):
            writer.write(p, data + b"\n")
            most = max(most, open_fds() - before)
        writer.commit()
    assert most == 0
    assert sum(1 for _ in partition_lines(tmp_path / "t00000.jsonl", 7)) > 0


def test_a_killed_writer_leaves_no_data_file_and_a_rerun_clears_its_runs(tmp_path):
    path = tmp_path / "t00000.jsonl"
    writer = ShuffleWriter(path, 10, memory=100)
    for p, data in _rows(2, 10, 200):
        writer.write(p, data + b"\n")
    assert list(tmp_path.glob("*.run*.tmp")) and shuffle_files(tmp_path) == []  # killed here
    with ShuffleWriter(path, 10) as again:
        again.write(3, b"only\n")
        again.commit()
    assert list(tmp_path.glob("*.tmp")) == []
    assert [list(partition_lines(path, p)) for p in (2, 3)] == [[], [b"only"]]


def test_a_truncated_compressed_range_is_an_error_not_fewer_rows(tmp_path):
    path = tmp_path / "t00000.jsonl.zst"
    with ShuffleWriter(path, 2) as writer:
        for i in range(2_000):
            writer.write(1, f"row {i} {random.Random(i).random()}".encode() + b"\n")
        writer.commit()
    assert len(list(partition_lines(path, 1, block=100))) == 2_000
    size = path.stat().st_size
    os.truncate(path, size - 10)
    with pytest.raises(EOFError, match="10 bytes missing"):
        list(partition_lines(path, 1))
    with path.open("ab") as handle:  # the size again, but a frame's last bytes garbled
        handle.write(b"\0" * 10)
    with pytest.raises((ValueError, zstandard.ZstdError)):
        list(partition_lines(path, 1))


def test_grouped_rows_must_come_in_partition_order(tmp_path):
    write_grouped(tmp_path / "p00000.jsonl", 4, [(0, b"a\n"), (2, b"b\n"), (2, b"c\n")])
    assert [list(partition_lines(tmp_path / "p00000.jsonl", p)) for p in range(4)] == [
        [b"a"],
        [],
        [b"b", b"c"],
        [],
    ]
    with pytest.raises(ValueError, match="partition 1 written after 2"):
        write_grouped(tmp_path / "p00001.jsonl", 4, [(2, b"b\n"), (1, b"a\n")])
    assert not (tmp_path / "p00001.jsonl").exists()


def test_a_held_range_is_opened_once_and_closed_when_read(tmp_path, monkeypatch):
    """A merge of thousands of files reads each a small block at a time: held, a range is one
    open whatever its number of blocks (one per block otherwise), and the file is closed once
    its range is read or its stream dropped."""
    from data_synthesis.engine import shuffle

    path = tmp_path / "t00000.jsonl"
    write_grouped(path, 2, [(1, f"row {i}\n".encode()) for i in range(100)])
    opened, handles = [], []

    def counting_open(*args, **kwargs):
        opened.append(args[0])
        handles.append(open(*args, **kwargs))
        return handles[-1]

    monkeypatch.setattr(shuffle, "open", counting_open, raising=False)
    assert len(list(partition_lines(path, 1, block=16))) == 100
    reopened = sum(p == path for p in opened)
    opened.clear()
    assert len(list(partition_lines(path, 1, block=16, hold=True))) == 100
    assert reopened > 40 and sum(p == path for p in opened) == 1
    stream = partition_lines(path, 1, block=16, hold=True)
    next(stream)
    assert not handles[-1].closed
    stream.close()
    assert all(handle.closed for handle in handles)
