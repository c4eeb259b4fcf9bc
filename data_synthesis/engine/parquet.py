"""Parquet inputs (FineWeb and RedPajama-v2 ship parquet) as the JSON lines synthesis reads.

A parquet file is cut by row groups, not bytes: row group i starts at the sum of the earlier
groups' compressed sizes, and a task owns the groups that start in its byte range of the file
(as it owns the lines that start in a JSONL file's), so each row is read by exactly one task,
whatever the task count. A row becomes the JSON line of its document columns (COLUMNS; other
columns are left out, a non-string value written as text) and its offset is its row number in
the file, so an error names `file:row` and a document without an id is `<file>:<row>`.
pyarrow reads the row groups a batch at a time; a search index keeps the rows' pages as it
does a compressed corpus's (environment/build.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

MAGIC = b"PAR1"
COLUMNS = ("text", "id", "url", "title", "date")
BATCH_ROWS = 1024


class ParquetError(ValueError):
    """A parquet input that cannot be read as documents; the message names the file."""


def _metadata(path: str | Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ParquetError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None

    try:
        return pq.ParquetFile(path)
    except Exception as error:  # pyarrow's ArrowInvalid, OSError
        raise ParquetError(f"{path}: not a readable parquet file ({error})") from None


def group_starts(parquet) -> list[int]:
    """Each row group's start in the file's byte coordinates: the earlier groups' compressed
    sizes summed (below the file's size, so every group has an owning task)."""
    starts, at = [], 0
    meta = parquet.metadata
    for i in range(meta.num_row_groups):
        starts.append(at)
        group = meta.row_group(i)
        at += sum(group.column(j).total_compressed_size for j in range(group.num_columns))
    return starts


def sizes(path: Path) -> tuple[int, int]:
    """The row groups' uncompressed size, and the largest one's (the footer's figures, nothing
    else is read): the file's text, and the most of it one task reads at once."""
    meta = _metadata(path).metadata
    groups = [meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)]
    return sum(groups), max(groups, default=0)


class RowReader:
    """(row number, JSON line) of each row of the row groups starting in [start, end) of the
    file; `consumed` is how much of that byte range is read (progress)."""

    def __init__(self, path: str, start: int, end: int):
        self.path, self.start, self.end = path, start, end
        self.consumed = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        parquet = _metadata(self.path)
        starts = group_starts(parquet) + [self.end]
        names = parquet.schema_arrow.names
        if "text" not in names:
            raise ParquetError(f"{self.path}: no 'text' column (columns: {', '.join(names)})")
        columns = [c for c in COLUMNS if c in names]
        meta = parquet.metadata
        row = 0
        for group in range(meta.num_row_groups):
            rows = meta.row_group(group).num_rows
            if self.start <= starts[group] < self.end:
                self.consumed = min(starts[group + 1], self.end) - self.start  # with its rows
                yield from self._group(parquet, group, columns, row)
            row += rows
        self.consumed = self.end - self.start

    def _group(self, parquet, group: int, columns: list[str], row: int):
        try:
            batches = parquet.iter_batches(BATCH_ROWS, row_groups=[group], columns=columns)
            for batch in batches:
                for record in batch.to_pylist():
                    try:
                        doc = {k: _plain(v) for k, v in record.items()}
                    except UnicodeDecodeError:
                        where = f"{self.path}:{row + 1}"
                        raise ParquetError(f"{where}: a binary column is not UTF-8") from None
                    yield row, (json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8")
                    row += 1
        except ParquetError:
            raise
        except Exception as error:  # a damaged row group: pyarrow's ArrowInvalid, OSError
            raise ParquetError(f"{self.path}: row group {group} cannot be read ({error})") from None


def _plain(value):
    """A column's value as JSON has it: a string, an integer or null; a binary column's bytes
    as UTF-8 (UnicodeDecodeError otherwise); anything else (a date, a float id) as its text."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value if value is None or isinstance(value, str | int) else str(value)
