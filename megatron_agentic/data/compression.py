"""Compressed files, known by their first bytes (gzip, zstd, bzip2, xz), read as streams.

Shared by tools/preprocess_data.py (megatron_agentic/data/jsonl.py) and the synthesis engine
(data_synthesis/engine/io.py). Every member, frame or stream of a concatenated file is read,
and a file cut short or corrupt is an error naming it, never fewer lines: zstandard's own
stream reader ends quietly at the cut of a truncated file, so zstd is read frame by frame here.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from pathlib import Path

import zstandard

# a compressed file's first bytes -> its format (by content, not by name: a "corpus.jsonl" that
# is gzip inside is read as gzip)
MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
    b"\xfd7zXZ": "xz",
}


# compressed bytes inflated at a time: text compressing 30x comes out 2 MB at a time, not 30 (the
# decompressed block is held whole; 1 MiB reads held 43 MB to count a file's lines, these 10 MB)
ZSTD_READ = 1 << 16

# what a damaged file raises (gzip and bzip2: OSError, EOFError; xz; zstd)
DECOMPRESSION_ERRORS = (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError)


def codec_of(path: Path) -> str | None:
    """The compression of a file by its first bytes (gzip, zstd, bzip2, xz), None when plain."""
    with open(path, "rb") as handle:
        return codec_of_head(handle.read(6))


def codec_of_head(head: bytes) -> str | None:
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)


def open_decompressed(codec: str | None, raw: io.BufferedIOBase) -> io.BufferedIOBase:
    """A binary stream of the decompressed file over `raw` (itself when `codec` is None); every
    member, frame or stream of a concatenated file is read (`cat a.gz b.gz`, pzstd's frames)."""
    if codec is None:
        return raw
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "zstd":
        return io.BufferedReader(_ZstdFrames(raw), 1 << 20)
    if codec == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if codec == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    raise ValueError(f"unknown compression {codec!r}")


class _ZstdFrames(io.RawIOBase):
    """The frames of a zstd file one after another, a file ending inside a frame an EOFError
    like gzip's (zstandard's own stream reader ends quietly short on a truncated file)."""

    def __init__(self, raw: io.BufferedIOBase):
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._raw, self._frame, self._out, self._at = raw, None, b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._at == len(self._out):
            data = self._raw.read(ZSTD_READ)
            if not data:
                if self._frame is not None:
                    raise EOFError("the zstd file ends inside a frame (truncated?)")
                return 0
            self._out, self._at = self._inflate(data), 0
        count = min(len(buffer), len(self._out) - self._at)
        buffer[:count] = self._out[self._at : self._at + count]
        self._at += count
        return count

    def _inflate(self, data: bytes) -> bytes:
        out = []
        while data:
            self._frame = self._frame or self._new()
            out.append(self._frame.decompress(data))
            data = b""
            if self._frame.eof:  # the frame is complete: what follows starts the next one
                data, self._frame = self._frame.unused_data, None
        return b"".join(out)


class DamagedFileError(ValueError):
    """A compressed file that cannot be read to its end (cut short, corrupt)."""


def damaged(path, codec: str | None, position: int, error: Exception) -> DamagedFileError:
    return DamagedFileError(
        f"{path}: a damaged {codec} file after {position:,} decompressed bytes ({error})"
    )
