"""Megatron indexed datasets (.bin/.idx): an atomic streaming writer, merging, and statistics.

The files are megatron-core's `IndexedDataset` format, byte for byte what its `IndexedDatasetBuilder`
(and so Megatron-LM's tools/preprocess_data.py) writes for the same token sequences; a test checks
this against megatron-core itself. The writer is ours for three reasons: importing megatron.core
costs seconds and ~0.9 GB of memory, too much for a tokenizer-speed tool; per-document lengths stay
in compact arrays (memory flat in the input size); and files are written under temporary names,
renamed only when the dataset is complete.
"""

from __future__ import annotations

import os
import shutil
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PARTIAL = ".partial"
_HEADER = b"MMIDIDX\x00\x00"
_VERSION = 1
# megatron.core.datasets.indexed_dataset.DType codes
_DTYPE_CODES = {
    np.uint8: 1,
    np.int8: 2,
    np.int16: 3,
    np.int32: 4,
    np.int64: 5,
    np.float64: 6,
    np.float32: 7,
    np.uint16: 8,
}
_CODE_DTYPES = {code: dtype for dtype, code in _DTYPE_CODES.items()}


def token_dtype(vocab_size: int) -> type[np.number]:
    """megatron-core's choice: uint16 below 65,500 tokens of vocabulary, int32 above."""
    return np.uint16 if vocab_size < 65500 else np.int32


def bin_path(prefix: str | Path) -> str:
    return f"{prefix}.bin"


def idx_path(prefix: str | Path) -> str:
    return f"{prefix}.idx"


def dataset_exists(prefix: str | Path) -> bool:
    """Both files of a finished dataset are there (partial writes have other names)."""
    return os.path.isfile(bin_path(prefix)) and os.path.isfile(idx_path(prefix))


def write_index(path: str, dtype, sequence_lengths, document_indices) -> None:
    """The .idx file: header, version, dtype code, counts, lengths, byte pointers, documents.
    Written in chunks, without copying the (possibly large) length arrays."""
    lengths = _as_numpy(sequence_lengths, np.int32)
    documents = _as_numpy(document_indices, np.int64)
    itemsize = np.dtype(dtype).itemsize
    with open(path, "wb") as handle:
        handle.write(_HEADER)
        handle.write(struct.pack("<Q", _VERSION))
        handle.write(struct.pack("<B", _DTYPE_CODES[np.dtype(dtype).type]))
        handle.write(struct.pack("<Q", len(lengths)))
        handle.write(struct.pack("<Q", len(documents)))
        handle.write(memoryview(lengths))  # no copy
        offset = 0
        for start in range(0, len(lengths), _CHUNK):  # byte offset of each sequence
            chunk = lengths[start : start + _CHUNK].astype(np.int64) * itemsize
            pointers = np.cumsum(chunk) - chunk + offset
            handle.write(pointers.tobytes(order="C"))
            offset = int(pointers[-1] + chunk[-1])
        handle.write(memoryview(documents))


_CHUNK = 1 << 16  # pointers are computed per chunk: a bounded transient


def _as_numpy(values, dtype) -> np.ndarray:
    """A zero-copy view of an array.array of the right type, else a converted copy."""
    if isinstance(values, array) and np.dtype(values.typecode) == np.dtype(dtype):
        return np.frombuffer(values, dtype=dtype)
    return np.asarray(values, dtype=dtype)


def read_index(path: str) -> tuple[type[np.number], np.ndarray, np.ndarray]:
    """(token dtype, sequence lengths, document indices) of an .idx file."""
    with open(path, "rb") as handle:
        if handle.read(len(_HEADER)) != _HEADER:
            raise ValueError(f"{path}: not a Megatron indexed dataset index")
        (version,) = struct.unpack("<Q", handle.read(8))
        (code,) = struct.unpack("<B", handle.read(1))
        sequences, documents = struct.unpack("<QQ", handle.read(16))
        if version != _VERSION or code not in _CODE_DTYPES:
            raise ValueError(f"{path}: unsupported index version {version} or dtype code {code}")
        lengths = np.frombuffer(handle.read(4 * sequences), dtype=np.int32)
        handle.seek(8 * sequences, os.SEEK_CUR)
        document_indices = np.frombuffer(handle.read(8 * documents), dtype=np.int64)
    if len(lengths) != sequences or len(document_indices) != documents:
        raise ValueError(f"{path}: truncated index")
    return _CODE_DTYPES[code], lengths, document_indices


class IndexedDatasetWriter:
    """Append documents to `{prefix}.bin/.idx`; `finish()` makes them appear, `abort()` removes them."""

    def __init__(self, prefix: str | Path, dtype: type[np.number]):
        self.prefix = str(prefix)
        self.dtype = np.dtype(dtype)
        self._bin_tmp = bin_path(self.prefix) + PARTIAL
        self._idx_tmp = idx_path(self.prefix) + PARTIAL
        Path(self._bin_tmp).parent.mkdir(parents=True, exist_ok=True)
        self._bin = open(self._bin_tmp, "wb")
        self.sequence_lengths = array("i")
        self.document_indices = array("q", [0])
        self.num_tokens = 0
        self.max_id = -1  # the largest token id written (-1: none yet)

    def add_document(self, tokens, sentence_lengths) -> None:
        """One document: its tokens, and the length of each of its sequences (sentences)."""
        data = np.asarray(tokens, dtype=self.dtype)
        self._bin.write(data.tobytes(order="C"))
        self.sequence_lengths.extend(sentence_lengths)
        self.document_indices.append(len(self.sequence_lengths))
        self.num_tokens += data.size
        if data.size:
            self.max_id = max(self.max_id, int(data.max()))

    def add_dataset(self, prefix: str | Path) -> None:
        """Append a whole finished dataset (documents keep their order)."""
        dtype, lengths, documents = read_index(idx_path(prefix))
        if dtype != self.dtype.type:
            raise ValueError(f"{prefix}: token dtype {np.dtype(dtype)} differs from {self.dtype}")
        offset = len(self.sequence_lengths)
        self.sequence_lengths.extend(lengths.tolist())
        self.document_indices.extend((documents[1:] + offset).tolist())
        self.num_tokens += int(lengths.sum())
        self.max_id = max(self.max_id, max_token_id(prefix))
        with open(bin_path(prefix), "rb") as source:
            shutil.copyfileobj(source, self._bin, 16 << 20)

    def finish(self) -> None:
        """Write the index and give both files their final names (the .idx last)."""
        self._bin.close()
        write_index(self._idx_tmp, self.dtype, self.sequence_lengths, self.document_indices)
        os.replace(self._bin_tmp, bin_path(self.prefix))
        os.replace(self._idx_tmp, idx_path(self.prefix))

    def abort(self) -> None:
        """Close and remove the partial files."""
        self._bin.close()
        for path in (self._bin_tmp, self._idx_tmp):
            if os.path.exists(path):
                os.remove(path)


def merge_datasets(prefixes: list[str | Path], output_prefix: str | Path) -> int:
    """Concatenate finished datasets in order into one; returns its document count. The merged
    dataset records the inputs' tokenizer when they all record the same one."""
    from megatron_agentic.data.checks import merged_tokenizer, remove_meta, write_meta

    if not prefixes:
        raise ValueError("nothing to merge")
    for prefix in prefixes:
        if not dataset_exists(prefix):
            raise FileNotFoundError(f"{prefix}: no finished dataset (.bin and .idx) there")
    dtype, _, _ = read_index(idx_path(prefixes[0]))
    tokenizer = merged_tokenizer(prefixes)
    remove_meta(output_prefix)
    writer = IndexedDatasetWriter(output_prefix, dtype)
    try:
        for prefix in prefixes:
            writer.add_dataset(prefix)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    if tokenizer is not None:
        write_meta(writer, tokenizer)
    return len(writer.document_indices) - 1


def datasets_in_directory(directory: str | Path) -> list[str]:
    """Megatron-LM's `merge_datasets.py --input DIR`: every .bin/.idx pair directly in DIR, in name
    order; a lone .bin or .idx is an error naming it."""
    directory = Path(directory)
    names = {}
    for path in directory.iterdir():
        if path.is_file() and path.suffix in (".bin", ".idx") and not path.name.endswith(PARTIAL):
            names.setdefault(path.with_suffix(""), set()).add(path.suffix)
    lone = sorted(
        f"{p}{'.idx' if s == {'.bin'} else '.bin'}" for p, s in names.items() if len(s) < 2
    )
    if lone:
        raise FileNotFoundError(
            f"{directory}: missing {', '.join(lone)} (every .bin needs its .idx)"
        )
    if not names:
        raise FileNotFoundError(f"{directory}: no .bin/.idx datasets in this directory")
    return [str(p) for p in sorted(names, key=lambda p: p.name)]


def max_token_id(prefix: str | Path) -> int:
    """The largest token id of a dataset: its recorded value when the record matches the files,
    else a chunked scan of the .bin (-1 for an empty dataset)."""
    from megatron_agentic.data.checks import read_meta

    meta = read_meta(prefix)
    if meta is not None and meta.get("bin_bytes") == os.path.getsize(bin_path(prefix)):
        return int(meta["max_id"])
    dtype, _, _ = read_index(idx_path(prefix))
    tokens = (
        np.memmap(bin_path(prefix), dtype=dtype, mode="r")
        if os.path.getsize(bin_path(prefix))
        else []
    )
    largest = -1
    for start in range(0, len(tokens), _SCAN):
        largest = max(largest, int(tokens[start : start + _SCAN].max()))
    return largest


_SCAN = 1 << 24  # tokens per chunk of the max-id scan


@dataclass
class DatasetStats:
    """Documents, tokens and document-length percentiles of one dataset."""

    prefix: str
    documents: int
    tokens: int
    dtype: str
    length_percentiles: dict[int, float]

    def row(self) -> str:
        p = self.length_percentiles
        return (
            f"{self.prefix}  docs={self.documents:,}  tokens={self.tokens:,}  dtype={self.dtype}  "
            f"len p50={p[50]:.0f} p90={p[90]:.0f} p99={p[99]:.0f} max={p[100]:.0f}"
        )


def dataset_stats(prefix: str | Path) -> DatasetStats:
    """Read one dataset's index and summarise it."""
    if not dataset_exists(prefix):
        raise FileNotFoundError(f"{prefix}: no finished dataset (.bin and .idx) there")
    dtype, lengths, bounds = read_index(idx_path(prefix))
    lengths = lengths.astype(np.int64)
    doc_lengths = np.add.reduceat(lengths, bounds[:-1]) if len(lengths) else np.zeros(0)
    # Documents with no sequences have reduceat artefacts; their length is zero.
    doc_lengths = (
        np.where(bounds[1:] > bounds[:-1], doc_lengths, 0) if len(lengths) else doc_lengths
    )
    quantiles = (50, 90, 99, 100)
    values = np.percentile(doc_lengths, quantiles) if len(doc_lengths) else [0] * len(quantiles)
    return DatasetStats(
        prefix=str(prefix),
        documents=len(bounds) - 1,
        tokens=int(lengths.sum()),
        dtype=np.dtype(dtype).name,
        length_percentiles=dict(zip(quantiles, map(float, values))),
    )
