"""What is checked about datasets before training, so bad data fails at start with a named file.

- **Records** (`{prefix}.meta/info.json`, written by our preprocessing and merging beside the
  untouched Megatron .bin/.idx): the tokenizer (type, vocabulary size, a hash of its vocabulary
  files), documents, tokens, the largest token id and the file sizes. The folder is ignored by
  Megatron-LM's own tools (its merge_datasets.py skips folders).
- **Pairs**: the .idx header (magic, version, dtype), its length against its counts, the document
  index, and the token count against the .bin's length: a truncated .bin or an .idx from another
  dataset is refused, naming both files.
- **Vocabulary**: the recorded tokenizer against the trainer's, and the largest token id (recorded,
  or a chunked scan of the .bin) against the trainer's vocabulary.
- **Splits**: a train/valid/test split with a non-zero share that gets no tokens of a dataset
  (megatron-core would loop forever in GPTDataset._get_num_epochs building it).
- **Index caches** (megatron-core's `data_cache/<hash>-<Class>-<split>-*.npy`): a file torn by a
  kill during its write (length against its .npy header), or built from data that was regenerated
  since (size and mtime of each dataset's files recorded in `datasets.json` beside the caches), is
  named and its cache group removed, so megatron-core rebuilds it.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from megatron_agentic.data.indexed import _CODE_DTYPES, _HEADER, _VERSION, bin_path, idx_path

META = "info.json"
CACHE_MANIFEST = "datasets.json"
_IDX_HEADER_BYTES = len(_HEADER) + 8 + 1 + 8 + 8


class DatasetError(ValueError):
    """A dataset that must not be trained on, with the file at fault."""


# ---- records -------------------------------------------------------------------------------


def meta_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.meta") / META


def write_meta(writer, tokenizer: dict) -> None:
    """Record a finished dataset (an IndexedDatasetWriter after finish()) and its tokenizer."""
    path = meta_path(writer.prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "tokenizer": tokenizer,
        "documents": len(writer.document_indices) - 1,
        "sequences": len(writer.sequence_lengths),
        "tokens": int(writer.num_tokens),
        "max_id": int(writer.max_id),
        "dtype": writer.dtype.name,
        "bin_bytes": os.path.getsize(bin_path(writer.prefix)),
        "idx_bytes": os.path.getsize(idx_path(writer.prefix)),
    }
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_meta(prefix: str | Path) -> dict | None:
    """The dataset's record, or None when it has none (e.g. written by Megatron-LM's tool)."""
    path = meta_path(prefix)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: unreadable dataset record ({error}); delete it") from None


def remove_meta(prefix: str | Path) -> None:
    shutil.rmtree(meta_path(prefix).parent, ignore_errors=True)


def merged_tokenizer(prefixes) -> dict | None:
    """The tokenizer record all inputs share (None if any has none); refuses mixed tokenizers."""
    records = [read_meta(p) for p in prefixes]
    if any(r is None for r in records):
        return None
    first = records[0]["tokenizer"]
    for prefix, record in zip(prefixes, records):
        if record["tokenizer"]["sha256"] != first["sha256"]:
            raise DatasetError(
                f"{prefix} was tokenized with {_describe(record['tokenizer'])}, {prefixes[0]} "
                f"with {_describe(first)}: merging datasets of different tokenizers"
            )
    return first


def _describe(tokenizer: dict) -> str:
    return (
        f"{tokenizer['type']} {', '.join(tokenizer['model'])} (vocab {tokenizer['vocab_size']:,}, "
        f"sha256 {tokenizer['sha256'][:12]})"
    )


# ---- .bin/.idx pairs -----------------------------------------------------------------------


@dataclass
class PairInfo:
    """What a validated .idx says."""

    dtype: type
    sequences: int
    documents: int
    tokens: int


def validate_pair(prefix: str | Path) -> PairInfo:
    """Check one dataset's .idx against itself and its .bin (and its record); DatasetError naming
    the file otherwise."""
    idx, binary = idx_path(prefix), bin_path(prefix)
    for path in (binary, idx):
        if not os.path.isfile(path):
            raise DatasetError(f"{path}: missing (run tools/preprocess_data.py)")
    idx_bytes = os.path.getsize(idx)
    with open(idx, "rb") as handle:
        head = handle.read(_IDX_HEADER_BYTES)
    if len(head) < _IDX_HEADER_BYTES or not head.startswith(_HEADER):
        raise DatasetError(f"{idx}: not a Megatron indexed dataset index (bad header)")
    version, code, sequences, documents = struct.unpack("<QBQQ", head[len(_HEADER) :])
    if version != _VERSION or code not in _CODE_DTYPES:
        raise DatasetError(f"{idx}: unsupported index version {version} or dtype code {code}")
    expected = _IDX_HEADER_BYTES + 12 * sequences + 8 * documents
    if idx_bytes != expected:
        raise DatasetError(
            f"{idx}: {idx_bytes:,} bytes, but its header ({sequences:,} sequences, "
            f"{documents - 1:,} documents) needs {expected:,}: truncated or corrupt index"
        )
    dtype = _CODE_DTYPES[code]
    lengths = np.memmap(idx, np.int32, "r", _IDX_HEADER_BYTES, (sequences,)) if sequences else []
    doc_offset = _IDX_HEADER_BYTES + 12 * sequences
    bounds = np.memmap(idx, np.int64, "r", doc_offset, (documents,)) if documents else []
    if documents < 1 or bounds[0] != 0 or bounds[-1] != sequences or np.any(np.diff(bounds) < 0):
        raise DatasetError(f"{idx}: corrupt document index (must rise from 0 to {sequences:,})")
    tokens = int(np.sum(lengths, dtype=np.int64)) if sequences else 0
    need = tokens * np.dtype(dtype).itemsize
    have = os.path.getsize(binary)
    if have != need:
        raise DatasetError(
            f"{binary}: {have:,} bytes, but {idx} describes {tokens:,} {np.dtype(dtype).name} "
            f"tokens ({need:,} bytes): the .bin is truncated or the .idx belongs to another dataset"
        )
    meta = read_meta(prefix)
    if meta is not None and (meta["bin_bytes"], meta["idx_bytes"], meta["documents"]) != (
        have,
        idx_bytes,
        documents - 1,
    ):
        raise DatasetError(
            f"{meta_path(prefix)} records {meta['documents']:,} documents in {meta['bin_bytes']:,}"
            f"+{meta['idx_bytes']:,} bytes, but {prefix}.bin/.idx hold {documents - 1:,} documents "
            f"in {have:,}+{idx_bytes:,} bytes: the files were replaced after preprocessing (delete "
            f"the stale {meta_path(prefix).parent} if they are right)"
        )
    return PairInfo(dtype, sequences, documents - 1, tokens)


# ---- vocabulary ----------------------------------------------------------------------------


def check_vocabulary(prefix: str | Path, tokenizer) -> None:
    """The dataset's recorded tokenizer and its largest token id against the trainer's tokenizer."""
    from megatron_agentic.data.indexed import max_token_id

    meta = read_meta(prefix)
    record = tokenizer.record() if hasattr(tokenizer, "record") else None
    if meta is not None and record is not None:
        ours = meta["tokenizer"]
        if (ours["sha256"], ours["vocab_size"]) != (record["sha256"], record["vocab_size"]):
            raise DatasetError(
                f"{prefix}: tokenized with {_describe(ours)}, but the trainer's tokenizer is "
                f"{_describe(record)}; retokenize, or set data.tokenizer_model to the tokenizer "
                f"the data was made with"
            )
    largest = max_token_id(prefix)
    if largest >= tokenizer.vocab_size:
        raise DatasetError(
            f"{prefix}: token id {largest:,} >= the vocabulary size {tokenizer.vocab_size:,} of "
            f"the trainer's tokenizer: the data was tokenized with a larger vocabulary"
        )


# ---- splits --------------------------------------------------------------------------------


def check_splits(prefix: str | Path, split: str) -> None:
    """Refuse a split that gets no tokens of this dataset: megatron-core builds every split with
    a non-zero share (even when no samples are asked of it) and loops forever on an empty one."""
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )

    _, lengths, bounds = _index_arrays(prefix)
    documents = len(bounds) - 1
    matrix = convert_split_vector_to_split_matrix(parse_and_normalize_split(split))
    for name, bookends in zip(("train", "valid", "test"), matrix):
        if bookends is None:
            continue
        begin = int(round(bookends[0] * float(documents)))
        end = int(round(bookends[1] * float(documents)))
        tokens = int(lengths[bounds[begin] : bounds[end]].sum()) if end > begin else 0
        if tokens == 0:
            raise DatasetError(
                f"{prefix}: split {split!r} gives the {name} split {end - begin} of its "
                f"{documents:,} documents and 0 tokens (megatron-core would loop forever building "
                f"it); give {name} a share of 0 or a larger one, or use more documents"
            )


def _index_arrays(prefix):
    from megatron_agentic.data.indexed import read_index

    return read_index(idx_path(prefix))


# ---- megatron-core's index caches ----------------------------------------------------------


def repair_cache(cache_dir: str | Path, prefixes) -> list[str]:
    """Remove torn cache files and caches built from since-changed datasets (whole groups, so
    megatron-core rebuilds them); returns what was removed, each with the reason (also printed)."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    removed = []
    for npy in sorted(cache_dir.glob("*.npy")):
        if not npy.exists():  # its group was removed already
            continue
        problem = _torn(npy)
        if problem:
            removed += _remove_group(npy, f"{npy} is torn ({problem})")
    manifest = _read_manifest(cache_dir)
    for prefix in prefixes:
        key = str(Path(prefix).resolve())
        signature = _signature(prefix)
        if manifest.get(key, signature) == signature:
            continue
        for description in sorted(cache_dir.glob("*-description.txt")):
            if not description.exists():
                continue
            text = description.read_text(encoding="utf-8", errors="replace")
            if key in text or str(prefix) in text:
                removed += _remove_group(
                    description, f"{prefix}.bin/.idx changed since {description.name} was built"
                )
    return removed


def record_cache(cache_dir: str | Path, prefixes) -> None:
    """Note which dataset files the caches in `cache_dir` were built from."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return
    manifest = _read_manifest(cache_dir)
    manifest.update({str(Path(p).resolve()): _signature(p) for p in prefixes})
    tmp = cache_dir / (CACHE_MANIFEST + ".partial")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, cache_dir / CACHE_MANIFEST)


def _signature(prefix) -> list[int]:
    stats = [os.stat(bin_path(prefix)), os.stat(idx_path(prefix))]
    return [value for s in stats for value in (s.st_size, s.st_mtime_ns)]


def _read_manifest(cache_dir: Path) -> dict:
    try:
        return json.loads((cache_dir / CACHE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def npy_header(npy: Path | BinaryIO) -> tuple[tuple, bool, np.dtype, int]:
    """A .npy file's shape, Fortran order, dtype and the byte offset of its data, read from
    its header with numpy's own readers (the data is not read); `npy` a path or a file open
    for reading (read from its start)."""
    if not isinstance(npy, (str, os.PathLike)):
        npy.seek(0)
        version = np.lib.format.read_magic(npy)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(npy)
        return shape, fortran, dtype, npy.tell()
    with open(npy, "rb") as handle:
        return npy_header(handle)


def _torn(npy: Path) -> str | None:
    """Why a .npy file is incomplete, or None when its length matches its header."""
    size = npy.stat().st_size
    try:
        shape, _, dtype, header = npy_header(npy)
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        return f"unreadable header: {error}"
    if dtype.hasobject:
        return None
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return None if size == expected else f"{size:,} bytes, its header says {expected:,}"


def _remove_group(member: Path, reason: str) -> list[str]:
    """Remove every file of the cache group `<hash>-<Class>-<split>-*` that `member` belongs to."""
    group = "-".join(member.name.split("-")[:3]) + "-"
    files = sorted(member.parent.glob(group + "*"))
    for file in files:
        file.unlink(missing_ok=True)
    message = (
        f"data cache: {reason}; removed {member.parent / group}* ({len(files)} files) to rebuild"
    )
    print(message, file=sys.stderr, flush=True)
    return [message]
