"""Streaming JSONL input: files, globs or directories of .jsonl, plain or compressed (gzip,
zstd, bzip2, xz: known by the file's first bytes).

Lines are read one at a time (never the whole file), and every record knows its `file:line`, so a
bad line is reported where it is.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from megatron_agentic.data.compression import (
    DECOMPRESSION_ERRORS,
    codec_of,
    damaged,
    open_decompressed,
)

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.bz2", ".jsonl.xz", ".json")


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


@dataclass
class Line:
    """One raw non-blank line: where it came from, its position among all non-blank lines of the
    input (`index`), and how many on-disk input bytes were read up to it (`done_bytes`)."""

    path: Path
    number: int
    raw: bytes
    index: int = 0
    done_bytes: int = 0


def read_lines(files: list[Path]) -> Iterator[Line]:
    """Every non-blank line of every file, in order; a damaged compressed file is a
    DamagedFileError naming it, not fewer lines."""
    index = before = 0
    for path in files:
        codec, number = codec_of(path), 0
        with open(path, "rb", buffering=1 << 20) as raw:
            handle = open_decompressed(codec, raw)
            position = 0
            try:
                for number, line in enumerate(handle, 1):  # noqa: B007 - read in the message
                    position += len(line)
                    if line.strip():
                        done = position if handle is raw else raw.tell()
                        yield Line(path, number, line, index, before + done)
                        index += 1
            except DECOMPRESSION_ERRORS as error:
                raise damaged(path, codec, position, error) from None
            if handle is not raw:
                handle.close()
        before += path.stat().st_size


def count_lines(files: list[Path]) -> int:
    """The number of non-blank lines (documents) of the input."""
    return sum(1 for _ in read_lines(files))


def parse_record(line: Line) -> dict:
    """The line's JSON object. orjson first (fast); Python's json for what only it reads (NaN,
    Infinity: what json.dumps writes by default, and what Megatron-LM's json.loads accepts)."""
    try:
        record = orjson.loads(line.raw)
    except orjson.JSONDecodeError as error:
        try:
            record = json.loads(line.raw)
        except (ValueError, UnicodeDecodeError):
            raise BadLineError(f"{line.path}:{line.number}: not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise BadLineError(f"{line.path}:{line.number}: not a JSON object")
    return record


def field_sentences(line: Line, keys: list[str]) -> list[list[str]]:
    """Per key, the texts to encode: `[text]` for a string, the list itself for Megatron-LM's
    pre-split form `"text": ["sentence", ...]`; BadLineError otherwise."""
    record = parse_record(line)
    fields = []
    for key in keys:
        if key not in record:
            raise BadLineError(f"{line.path}:{line.number}: no key {key!r}")
        value = record[key]
        if isinstance(value, str):
            fields.append([value])
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            fields.append(value)
        else:
            kind = type(value).__name__
            raise BadLineError(
                f"{line.path}:{line.number}: key {key!r} is {kind}, not a string or a list of strings"
            )
    return fields
