"""Streaming JSONL input: files, globs or directories of .jsonl / .jsonl.gz / .jsonl.zst.

Lines are read one at a time (never the whole file), and every record knows its `file:line`, so a
bad line is reported where it is.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json")


class BadLineError(ValueError):
    """A JSONL line that cannot be used, with its `file:line`."""


def expand_inputs(spec: str | list[str]) -> list[Path]:
    """The input files of a path, glob or directory (sorted: the order is the output order)."""
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    files: list[Path] = []
    for item in specs:
        item = str(item)
        if os.path.isdir(item):
            found = sorted(p for p in Path(item).rglob("*") if p.name.endswith(SUFFIXES))
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if os.path.isfile(p))
        elif os.path.isfile(item):
            found = [Path(item)]
        else:
            raise FileNotFoundError(f"--input {item}: no such file, directory or matching glob")
        if not found:
            raise FileNotFoundError(f"--input {item}: no {'/'.join(SUFFIXES)} files found")
        files.extend(found)
    return files


def open_text(path: Path) -> io.BufferedIOBase:
    """A binary stream of the decompressed file (gzip and zstandard by suffix)."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        return io.BufferedReader(raw, 1 << 20)
    return open(path, "rb", buffering=1 << 20)


@dataclass
class Line:
    """One raw line and where it came from."""

    path: Path
    number: int
    raw: bytes


def read_lines(files: list[Path]) -> Iterator[Line]:
    """Every non-blank line of every file, in order."""
    for path in files:
        with open_text(path) as handle:
            for number, raw in enumerate(handle, 1):
                if raw.strip():
                    yield Line(path, number, raw)


def field_texts(line: Line, keys: list[str]) -> list[str]:
    """The string value of each key in the line's JSON object; BadLineError otherwise."""
    try:
        record = orjson.loads(line.raw)
    except orjson.JSONDecodeError as error:
        raise BadLineError(f"{line.path}:{line.number}: not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise BadLineError(f"{line.path}:{line.number}: not a JSON object")
    texts = []
    for key in keys:
        if key not in record:
            raise BadLineError(f"{line.path}:{line.number}: no key {key!r}")
        if not isinstance(record[key], str):
            kind = type(record[key]).__name__
            raise BadLineError(f"{line.path}:{line.number}: key {key!r} is {kind}, not a string")
        texts.append(record[key])
    return texts
