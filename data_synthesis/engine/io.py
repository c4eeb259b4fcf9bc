"""Streaming JSONL input and atomic output (whole JSONL files, and a task's files per partition).

A map task reads only its own byte range of the input files: the inputs' text is viewed as one
concatenated stream cut into `world_size` equal ranges, and a task owns every line that *starts*
inside its range (so each line belongs to exactly one task, whatever the task count). The files'
sizes and formats are described once, when the run is planned (`InputFile`), not by each task.
A compressed input (gzip, zstd, bzip2, xz, known by its first bytes) cannot be entered in the
middle, so it is one range, read by the task owning its first byte: a corpus shipped as many
compressed files (as web corpora are) spreads over the tasks like plain files do. A parquet
input is cut by row groups (engine/parquet.py). Bad input is an error naming file:line (the
line number is counted only when failing).
Large 1-D arrays are written a block at a time (`NpyWriter`) and read a range at a time with
pread (`NpyArray`), so neither is held whole nor mapped.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from data_synthesis.engine import parquet
from megatron_agentic.data.checks import npy_header
from megatron_agentic.data.compression import (
    DECOMPRESSION_ERRORS,
    DamagedFileError,
    codec_of_head,
    damaged,
    open_decompressed,
)

PARQUET = "parquet"
# The partition stages' outputs (questions/, docs/) are zstd (level 3, zstd's default): the
# synthesized documents repeat their tool responses and compress ~17x (HAS) to ~28x (planning)
# at ~1 GB/s, so a terabyte's run writes and reads a fraction of the bytes (docs/benchmarks.md).
ZSTD_SUFFIX = ".zst"
ZSTD_LEVEL = 3


class InputError(ValueError):
    """Input that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end) of an input file; a compressed file (`codec`) is one whole range, a
    parquet file's range holds the row groups starting in it (engine/parquet.py). `size` is
    the file's size when the run was planned (None: not checked)."""

    path: str
    start: int
    end: int
    codec: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class InputFile:
    """An input file as the run planned it: its path, size on disk, format (`format_of`) and
    text (`text_size`). The submitting process describes every file once (`describe`) and the
    tasks cut the inputs by these figures, so a map task touches only the files it reads: at 1 TB
    in 100,000 files, 1,024 tasks stat-ing every file was 10^8 metadata calls on the cluster's
    file system. A reader checks the size of the file it opens: a file changed since is an
    error, not a range cut by stale figures."""

    path: str
    size: int
    text: int
    codec: str | None = None
    whole: int = 0  # the most text one task reads at once: a compressed file, a row group
    edges: str = ""  # edges_sha256 (the run's fingerprint and the index's name use it)
    mtime_ns: int = 0

    def on_disk(self, position: int) -> int:
        """A position in the text's coordinates as one in the file's (parquet: proportional)."""
        return position if self.text == self.size else position * self.size // self.text


def describe(paths: list[Path]) -> list[InputFile]:
    """Each file's InputFile (paths as given), from a stat and one open: its first and last
    EDGE bytes give its format, its text (a compressed file's estimated from its head) and
    its edges' SHA-256. Each was an open of its own (three per file, and the search index's
    name a stat and an open more) until 2026-12-05."""
    described = []
    for path in paths:
        status = os.stat(path)
        size = status.st_size
        head, tail = read_edges(Path(path), size)
        codec = _format_of_head(head) if size else None
        if codec == PARQUET:
            text, whole = parquet.sizes(path)
        else:
            text = text_size(path, size, codec, head)
            whole = text if codec else 0
        edges = _edges_digest(head, tail)
        described.append(InputFile(str(path), size, text, codec, whole, edges, status.st_mtime_ns))
    return described


EDGE = 64 << 10  # 1 MiB until 2026-12-04: 200 GB read to start a run over 100,000 files


def read_edges(path: Path, size: int) -> tuple[bytes, bytes]:
    """A file's first EDGE bytes, and its last EDGE bytes after those (b"" when it is no
    longer than EDGE), from one open."""
    with open(path, "rb", buffering=0) as handle:
        head = os.pread(handle.fileno(), EDGE, 0)
        start = max(EDGE, size - EDGE)
        tail = os.pread(handle.fileno(), EDGE, start) if size > EDGE else b""
    return head, tail


def edges_sha256(path: Path, size: int) -> str:
    """SHA-256 of a file's first and last 64 KiB (all of it when it is smaller): what a run's
    fingerprint and the search index's name read of each file, cheap on a terabyte and
    changed when a file is replaced or appended to."""
    return _edges_digest(*read_edges(path, size))


def _edges_digest(head: bytes, tail: bytes) -> str:
    return hashlib.sha256(head + tail).hexdigest()


# the suffixes of the files a folder given as --input holds
INPUT_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.bz2", ".jsonl.xz", ".parquet")


def format_of(path: Path) -> str | None:
    """How a file is read, by its first bytes: "parquet", a compression (gzip, zstd, bzip2,
    xz), or None for plain JSONL."""
    with open(path, "rb") as handle:
        return _format_of_head(handle.read(6))


def _format_of_head(head: bytes) -> str | None:
    return PARQUET if head.startswith(parquet.MAGIC) else codec_of_head(head)


def input_files(spec: str | list[str]) -> list[Path]:
    """The JSONL files of an --input: a file, a directory (its *.jsonl, plain or compressed,
    sorted; symbolic links to folders not followed) or a list, as absolute paths (a folder is
    resolved once, not each file: on a cluster's file system every call is a round trip)."""
    specs = [spec] if isinstance(spec, str | Path) else list(spec)
    files: list[Path] = []
    for item in specs:
        path = Path(item)
        if path.is_dir():
            files += sorted(Path(p) for p in _files_under(str(path.resolve())))
        elif path.is_file():
            files.append(path.resolve())
        else:
            raise FileNotFoundError(f"--input {item}: no such file or directory")
    if not files:
        raise InputError(
            f"--input {spec}: no .jsonl (plain, .gz, .zst, .bz2, .xz) or .parquet files"
        )
    return files


def _files_under(folder: str) -> Iterator[str]:
    """The input files under a folder, by its entries' types (no call per file)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from _files_under(entry.path)
            elif entry.name.endswith(INPUT_SUFFIXES) and entry.is_file():
                yield entry.path


def text_size(
    path: Path, size: int | None = None, codec: str | None = "?", head: bytes = b""
) -> int:
    """The bytes of text a file holds: its size, or for a compressed file an estimate, its size
    times the ratio of its first 64 KiB (1 MiB when those give nothing, as bzip2's 900 KB blocks
    may) - what the run's fingerprint reads of it anyway. Automatic task and partition counts,
    the map tasks' ranges and the index's shards follow the text, not the bytes on disk: a zstd
    corpus holds ~3.4x its size. A parquet file's text is its row groups' uncompressed size (its
    footer's figure). `size`, `codec` and the file's first bytes (`head`) when the caller
    has them."""
    size = path.stat().st_size if size is None else size
    if codec == "?":
        codec = format_of(path) if size else None
    if codec is None:
        return size
    if codec == PARQUET:
        return parquet.sizes(path)[0]
    for head_bytes in (1 << 16, 1 << 20):
        if len(head) < min(head_bytes, size):
            with open(path, "rb") as handle:
                head = handle.read(head_bytes)
        head = head[:head_bytes]
        produced = 0
        try:
            with open_decompressed(codec, io.BytesIO(head)) as stream:
                while chunk := stream.read(1 << 16):
                    produced += len(chunk)
        except DECOMPRESSION_ERRORS:
            pass  # the head ends inside a block: what came out of it counts
        if produced or len(head) == size:
            return max(size, size * produced // len(head))
    return size


def task_ranges(files: list[InputFile], rank: int, world_size: int) -> list[ByteRange]:
    """The byte ranges of the inputs that task `rank` of `world_size` owns: the inputs' text
    laid end to end and cut into equal parts, so tasks share the text evenly whatever the
    formats. A compressed file cannot be entered in the middle: it is read whole by the task
    owning its first byte. A parquet file is cut like a plain one, by row groups instead of
    lines. Nothing is opened or stat-ed here: the figures are the plan's."""
    total = sum(f.text for f in files)
    lo, hi = total * rank // world_size, total * (rank + 1) // world_size
    ranges, offset = [], 0
    for file in files:
        start, end = max(lo, offset), min(hi, offset + file.text)
        if start < end:
            if file.codec in (None, PARQUET):
                start, end = file.on_disk(start - offset), file.on_disk(end - offset)
                if start < end:
                    ranges.append(ByteRange(file.path, start, end, file.codec, file.size))
            elif lo <= offset:
                ranges.append(ByteRange(file.path, 0, file.size, file.codec, file.size))
        offset += file.text
    return ranges


def check_unchanged(byte_range: ByteRange, size: int) -> None:
    """An input whose size differs from the plan's: its ranges were cut for another file."""
    if byte_range.size is not None and size != byte_range.size:
        raise InputError(
            f"{byte_range.path}: {size:,} bytes, but {byte_range.size:,} when this run was "
            "planned: the file changed under the run, whose outputs would mix two versions of "
            "it. Restore it, or start a new run (another --output) over the new input"
        )


class LineReader:
    """(offset, line) for each line starting inside a range (a line starting before it belongs
    to the previous task); a compressed range's offsets are those of the decompressed stream.
    `consumed` is how many of the range's on-disk bytes were read so far, the line just yielded
    included: progress, which for a compressed file is not the lines' length; `advanced()` is
    what was read since its last call (a caller calling it once per line counts every byte of
    a range that has a line, the first line's and the last one's included)."""

    def __init__(self, byte_range: ByteRange):
        self.range = byte_range
        self.consumed = self._reported = 0

    def advanced(self) -> int:
        step, self._reported = self.consumed - self._reported, self.consumed
        return step

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        byte_range = self.range
        if byte_range.codec == PARQUET:
            yield from self._rows()
            return
        with open(byte_range.path, "rb", buffering=1 << 20) as raw:
            check_unchanged(byte_range, os.fstat(raw.fileno()).st_size)
            if byte_range.codec:
                yield from self._decompressed(raw)
                return
            position = byte_range.start
            if position > 0:
                raw.seek(position - 1)
                if raw.read(1) != b"\n":
                    position += len(raw.readline())
            while position < byte_range.end:
                line = raw.readline()
                if not line:
                    break
                self.consumed = min(position + len(line), byte_range.end) - byte_range.start
                yield position, line
                position += len(line)
            self.consumed = byte_range.end - byte_range.start

    def _rows(self) -> Iterator[tuple[int, bytes]]:
        check_unchanged(self.range, os.stat(self.range.path).st_size)
        rows = parquet.RowReader(self.range.path, self.range.start, self.range.end)
        for row in rows:
            self.consumed = rows.consumed
            yield row
        self.consumed = rows.consumed

    def _decompressed(self, raw) -> Iterator[tuple[int, bytes]]:
        position = 0
        try:
            with open_decompressed(self.range.codec, raw) as stream:
                for line in stream:
                    self.consumed = raw.tell()
                    yield position, line
                    position += len(line)
        except DECOMPRESSION_ERRORS as error:
            raise damaged(self.range.path, self.range.codec, position, error) from None
        self.consumed = self.range.end - self.range.start


def read_lines(byte_range: ByteRange) -> LineReader:
    return LineReader(byte_range)


def line_number(path: str, offset: int) -> int:
    """1-based line number of the line starting at `offset` (of the decompressed stream for a
    compressed file; a parquet file's offset is a row number; only used to report errors)."""
    codec = format_of(Path(path))
    if codec == PARQUET:
        return offset + 1
    count, done = 1, 0
    with open(path, "rb") as raw, open_decompressed(codec, raw) as handle:
        while done < offset:
            chunk = handle.read(min(1 << 24, offset - done))
            if not chunk:
                break
            count += chunk.count(b"\n")
            done += len(chunk)
    return count


def parse_document(path: str, offset: int, line: bytes) -> dict | None:
    """One input document from one JSONL line (None for a blank line); InputError names
    file:line for bytes that are not UTF-8, invalid JSON, a non-object or a missing field."""

    def fail(what: str) -> InputError:
        return InputError(f"{path}:{line_number(path, offset)}: {what}")

    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise fail(
            f"not valid UTF-8 (byte 0x{line[error.start]:02x} at column {error.start + 1}); "
            "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    if not text.strip():
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise fail(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(doc, dict):
        raise fail(
            f"expected one JSON object per line with 'text' (and 'id'), got a JSON "
            f"{type(doc).__name__}"
        )
    if not isinstance(doc.get("text"), str):
        raise fail("a document needs a string 'text'")
    if "id" in doc and not isinstance(doc["id"], str | int):
        raise fail(f"a document's 'id' is a string or an integer, got {type(doc['id']).__name__}")
    doc["id"] = document_id(doc, path, offset)
    return doc


def document_id(doc: dict, path: str, offset: int) -> str:
    """A document's id: its 'id', else its 'url', else "<file name>:<byte offset>" - corpora
    such as C4 (a url) or the Pile (neither) carry no id. The search index names a page the
    same way, so a question's source documents are the pages the agent may visit."""
    for key in ("id", "url"):
        if isinstance(doc.get(key), str | int) and str(doc[key]):
            return str(doc[key])
    return f"{Path(path).name}:{offset}"


def stable_hash(key: str) -> int:
    """A hash that is the same in every process and Python version (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def partition_of(key: str, partitions: int) -> int:
    return stable_hash(key) % partitions


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def zstd_named(path: str | Path) -> bool:
    """Whether one of our outputs is zstd-compressed: by its name (`*.jsonl.zst`)."""
    return str(path).endswith(ZSTD_SUFFIX)


@contextmanager
def open_lines(path: str | Path) -> Iterator[io.BufferedIOBase]:
    """A binary stream of a file's lines, decompressed when its name says zstd; a damaged
    file's error names it."""
    with open(path, "rb") as raw:
        if not zstd_named(path):
            yield raw
            return
        with open_decompressed("zstd", raw) as stream:
            try:
                yield stream
            except DECOMPRESSION_ERRORS as error:
                raise DamagedFileError(f"{path}: a damaged zstd file ({error})") from None


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """Records of a JSONL file (plain or `.jsonl.zst`), streamed; a malformed line names
    file:line."""
    with open_lines(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                reason = getattr(error, "msg", "not UTF-8")
                raise InputError(f"{path}:{number}: not valid JSON ({reason})") from None


def _blocks(path: Path) -> Iterator[bytes]:
    with open_lines(path) as handle:
        yield from iter(lambda: handle.read(1 << 20), b"")


def count_lines(path: str | Path) -> int:
    """Lines of a file (0 when it does not exist; a `.zst` one decompressed), counted in 1 MiB
    blocks: nothing is parsed."""
    path = Path(path)
    return sum(block.count(b"\n") for block in _blocks(path)) if path.exists() else 0


class TooLarge(ValueError):
    """join_files stopped: the joined text would pass its limit (nothing was written)."""


def join_files(parts: list[Path], target: str | Path, limit: int | None = None) -> int:
    """`parts` joined (decompressed when `.zst`) into a plain `target`, atomically, 1 MiB at a
    time, nothing parsed; returns the number of lines. More text than `limit` (bytes) is
    TooLarge, and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, lines, size = target.with_name(target.name + ".tmp"), 0, 0
    with open(tmp, "wb") as handle:
        for part in parts:
            for block in _blocks(part):
                size += len(block)
                if limit is not None and size > limit:
                    handle.close()
                    tmp.unlink()
                    raise TooLarge(f"{target}: the parts hold more than {limit:,} bytes")
                handle.write(block)
                lines += block.count(b"\n")
    os.replace(tmp, target)
    return lines


def write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    """Write records atomically (temporary file, fsync, rename): a file either exists whole or
    not at all. A name ending in `.zst` is written zstd-compressed (one frame)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        sink = handle
        if zstd_named(path):  # a compressor per file: two writes may interleave (a generator)
            sink = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(handle, closefd=False)
        for record in records:
            sink.write((dumps(record) + "\n").encode("utf-8"))
        if sink is not handle:
            sink.close()  # the frame's end
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


# A framed file: a `.jsonl.zst` of independent frames of whole lines, FRAME_TEXT bytes of text
# or a little more each, so one line is read back by decompressing its frame alone
FRAME_TEXT = 16 << 10  # 12.8x on the benchmark's entity records (17.8x as one frame), ~7 us
IN_FRAME_BITS = 20  # a place: (frame's byte offset << IN_FRAME_BITS) | line's offset in it
FRAME_READ = 16 << 10  # compressed bytes read at a time to find a frame's end


class FramedLines:
    """Lines written to `handle` as a framed file: place() is where the next line starts (to
    keep in a look-up table), write() takes whole lines or parts of one (a common value's
    entity list is streamed, never held), close() ends the last frame. A frame ends at the
    first line end past FRAME_TEXT bytes of text. read_frame() and framed_line() (through
    engine/lookup.py's Tables.line) read a line back by its place. The file is an ordinary
    zstd file of many frames too: iter_jsonl streams it, zstdcat prints it. Entity records and
    look-up rows take about 5x less disk on real text (13x on the benchmark's), and a look-up
    costs one frame's decompression (~7 us) on top of its read."""

    def __init__(self, handle):
        self._handle, self._compressor = handle, zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._frame, self._text = None, 0  # the open frame and its text's size
        self._start = self._written = 0  # where the open (or next) frame starts; bytes written

    def place(self) -> int:
        return self._start << IN_FRAME_BITS | self._text  # a line starts before FRAME_TEXT

    def write(self, data: bytes) -> None:
        self._frame = self._frame or self._compressor.compressobj()
        self._put(self._frame.compress(data))
        self._text += len(data)
        if self._text >= FRAME_TEXT and data.endswith(b"\n"):
            self.close()

    def close(self) -> None:
        """End the open frame (the next write starts a new one)."""
        if self._frame is not None:
            self._put(self._frame.flush())
            self._frame, self._text, self._start = None, 0, self._written

    def _put(self, compressed: bytes) -> None:
        self._handle.write(compressed)
        self._written += len(compressed)


def read_frame(pread, start: int, path) -> bytes:
    """The text of the frame at byte `start` of a framed file; `pread(size, offset)` reads it."""
    frame, text, offset = zstandard.ZstdDecompressor().decompressobj(), [], start
    try:
        while not frame.eof:
            data = pread(FRAME_READ, offset)
            if not data:
                raise EOFError("the file ends inside a frame")
            text.append(frame.decompress(data))
            offset += len(data)
    except DECOMPRESSION_ERRORS as error:
        raise DamagedFileError(f"{path}: no zstd frame at byte {start:,} ({error})") from None
    return b"".join(text)


def framed_line(text: bytes, place: int) -> bytes:
    """The line at `place` of the frame whose text is `text` (read_frame's), without its end."""
    at = place & ((1 << IN_FRAME_BITS) - 1)
    end = text.find(b"\n", at)
    return text[at : end if end >= 0 else len(text)]


def write_json(path: str | Path, obj) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


class NpyWriter:
    """A .npy array written a block at a time, for arrays larger than memory: a placeholder
    header first, the final shape written into it on `close` (numpy pads a header to a multiple
    of 64 bytes: 128 for any 1-D or two-dimensional shape of fewer than 10^20 elements)."""

    HEADER = 128

    def __init__(self, path: Path, dtype):
        self.path, self.dtype, self.count = Path(path), np.dtype(dtype), 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(b"\0" * self.HEADER)

    def write(self, values: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(values, dtype=self.dtype).data)  # no bytes copy
        self.count += len(values)

    def close(self, shape: tuple[int, ...] | None = None) -> None:
        """Finish the file as an array of `shape` (default: 1-D), C order."""
        shape = shape or (self.count,)
        if int(np.prod(shape)) != self.count:
            raise ValueError(f"{self.path}: {self.count} values cannot have shape {shape}")
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header,
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": shape,
            },
        )
        if len(header.getvalue()) != self.HEADER:
            raise ValueError(
                f"{self.path}: a {len(header.getvalue())}-byte .npy header for {shape}"
            )
        self._file.seek(0)
        self._file.write(header.getvalue())
        self._file.close()


class NpyArray:
    """Element ranges of a 1-D .npy array, read with pread from a file kept open."""

    def __init__(self, path: Path):
        # buffered: the header is parsed from one read; the data is read with pread
        self._file = open(path, "rb")  # noqa: SIM115 - lives as long as the index
        try:
            shape, fortran, self.dtype, self.offset = npy_header(self._file)
            if len(shape) != 1 or fortran:
                raise ValueError(f"{path}: expected a 1-D array, found shape {shape}")
        except BaseException:
            self._file.close()
            raise
        self.size = shape[0]

    def __len__(self) -> int:
        return self.size

    def read(self, start: int, stop: int) -> np.ndarray:
        width = self.dtype.itemsize
        data = _pread(self._file.fileno(), (stop - start) * width, self.offset + start * width)
        return np.frombuffer(data, self.dtype)

    def close(self) -> None:
        self._file.close()


def _pread(fd: int, size: int, offset: int) -> bytes:
    parts = []
    while size > 0:  # one pread returns at most ~2 GiB
        part = os.pread(fd, size, offset)
        if not part:
            raise EOFError(f"file descriptor {fd}: {size} bytes missing at offset {offset}")
        parts.append(part)
        size, offset = size - len(part), offset + len(part)
    return b"".join(parts)


SPARE_FILES = 512  # open files left for the rest of a task when it holds many


def allow_open_files(needed: int, what: str = "") -> bool:
    """Raise the soft limit on open files (up to the hard one) when `needed` files would use
    more than half of it (a cluster job's default soft limit is often 1,024); whether they
    now fit, with SPARE_FILES to spare. With `what` (a task that must hold them all), an error
    naming it when even the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft // 2:
        return True
    if what and hard != resource.RLIM_INFINITY and needed > hard - 64:
        raise OSError(
            f"{what} needs {needed:,} files open at once, but this process may open only "
            f"{hard:,} (hard limit, `ulimit -Hn`): raise it on the nodes, or use fewer partitions"
        )
    wanted = 2 * needed + soft if hard == resource.RLIM_INFINITY else min(hard, 2 * needed + soft)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return needed + SPARE_FILES <= wanted
