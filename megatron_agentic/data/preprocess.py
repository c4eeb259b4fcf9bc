"""JSONL -> Megatron indexed datasets, streaming, at the tokenizer's own speed.

Documents are tokenized exactly as Megatron-LM's tools/preprocess_data.py does (one sequence per
document; with `append_eod`, the EOD token ends every non-empty document), so the output is
byte-identical to its output. The hot path is the tokenizer library's own multi-threaded batch
encoder, run in a background thread (it releases the GIL) while the main thread reads and parses
the next batch. Input is streamed and outputs are written under temporary names, so memory stays
flat in the input size and an interrupted run leaves nothing that looks complete.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from megatron_agentic.data.indexed import (
    IndexedDatasetWriter,
    bin_path,
    idx_path,
    merge_datasets,
    token_dtype,
)
from megatron_agentic.data.jsonl import BadLineError, expand_inputs, field_texts, read_lines


@dataclass
class PreprocessConfig:
    """The options of tools/preprocess_data.py (Megatron-LM's names)."""

    input: list[str]
    output_prefix: str
    tokenizer_type: str
    tokenizer_model: str
    json_keys: list[str] = field(default_factory=lambda: ["text"])
    append_eod: bool = False
    workers: int = 1
    partitions: int = 1
    log_interval: int = 10000
    skip_bad_lines: bool = False
    batch_size: int = 1024


@dataclass
class PreprocessSummary:
    """What a run wrote."""

    documents: int = 0
    skipped_lines: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    input_bytes: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    def report(self) -> str:
        rate = self.input_bytes / 1e6 / max(self.seconds, 1e-9)
        tokens = ", ".join(f"{k}={v:,}" for k, v in self.tokens.items())
        return (
            f"done: {self.documents:,} documents, tokens {tokens}, {self.skipped_lines:,} bad lines "
            f"skipped, {self.seconds:.1f} s ({rate:.1f} MB/s); wrote {', '.join(self.outputs)}"
        )


def output_prefix(prefix: str, key: str) -> str:
    """Megatron-LM's output naming: `{prefix}_{key}_document`."""
    return f"{prefix}_{key}_document"


def preprocess(config: PreprocessConfig) -> PreprocessSummary:
    """Run the whole conversion; with several partitions, one process per partition, then merge."""
    files = expand_inputs(config.input)
    prefixes = [output_prefix(config.output_prefix, key) for key in config.json_keys]
    for prefix in prefixes:  # a stale pair must never mix with a new half-written one
        for path in (bin_path(prefix), idx_path(prefix)):
            if os.path.exists(path):
                os.remove(path)
    partitions = max(1, min(config.partitions, len(files)))
    if partitions == 1:
        return _preprocess_files(config, files, config.output_prefix, config.workers)
    return _preprocess_partitions(config, files, partitions)


def _preprocess_partitions(config, files, partitions) -> PreprocessSummary:
    from multiprocessing import get_context

    groups = [
        files[i * len(files) // partitions : (i + 1) * len(files) // partitions]
        for i in range(partitions)
    ]
    part_prefixes = [f"{config.output_prefix}.part{i:05d}" for i in range(partitions)]
    workers = max(1, config.workers // partitions)
    start = time.perf_counter()
    with get_context("spawn").Pool(partitions) as pool:
        parts = pool.starmap(
            _preprocess_files, [(config, g, p, workers) for g, p in zip(groups, part_prefixes)]
        )
    summary = PreprocessSummary(tokens={key: 0 for key in config.json_keys})
    for part in parts:
        summary.documents += part.documents
        summary.skipped_lines += part.skipped_lines
        summary.input_bytes += part.input_bytes
        for key, count in part.tokens.items():
            summary.tokens[key] += count
    for key in config.json_keys:
        pieces = [output_prefix(p, key) for p in part_prefixes]
        final = output_prefix(config.output_prefix, key)
        merge_datasets(pieces, final)
        for piece in pieces:
            os.remove(bin_path(piece))
            os.remove(idx_path(piece))
        summary.outputs.append(final)
    summary.seconds = time.perf_counter() - start
    return summary


def _preprocess_files(
    config: PreprocessConfig, files: list[Path], prefix: str, workers: int
) -> PreprocessSummary:
    from megatron_agentic.tokenizer import build_tokenizer

    _set_tokenizer_threads(workers)
    tokenizer = build_tokenizer(config.tokenizer_type, config.tokenizer_model)
    dtype = token_dtype(tokenizer.vocab_size)
    writers = {k: IndexedDatasetWriter(output_prefix(prefix, k), dtype) for k in config.json_keys}
    summary = PreprocessSummary(tokens={key: 0 for key in config.json_keys})
    progress = _Progress(config.log_interval)
    try:
        with ThreadPoolExecutor(1) as encoder:
            pending = None
            for batch in _batches(read_lines(files), config, summary):
                future = encoder.submit(_encode_batch, tokenizer, batch, len(config.json_keys))
                if pending is not None:
                    _write(pending.result(), writers, tokenizer.eod, config, summary, progress)
                pending = future
            if pending is not None:
                _write(pending.result(), writers, tokenizer.eod, config, summary, progress)
        for writer in writers.values():
            writer.finish()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    summary.seconds = progress.elapsed()
    summary.outputs = [w.prefix for w in writers.values()]
    return summary


def _set_tokenizer_threads(workers: int) -> None:
    # The Rust tokenizer parallelises encode_batch only when allowed, over RAYON_NUM_THREADS.
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if workers > 1 else "false"
    os.environ["RAYON_NUM_THREADS"] = str(max(1, workers))


def _batches(lines, config: PreprocessConfig, summary: PreprocessSummary):
    """Lists of texts (all keys of each document, flattened), `batch_size` documents each."""
    batch: list[str] = []
    for line in lines:
        summary.input_bytes += len(line.raw)
        try:
            batch.extend(field_texts(line, config.json_keys))
        except BadLineError as error:
            if not config.skip_bad_lines:
                raise
            summary.skipped_lines += 1
            print(f"skipping {error}", file=sys.stderr)
            continue
        if len(batch) >= config.batch_size * len(config.json_keys):
            yield batch
            batch = []
    if batch:
        yield batch


def _encode_batch(tokenizer, texts: list[str], num_keys: int) -> list[list[list[int]]]:
    ids = tokenizer.tokenize_batch(texts)
    return [ids[i : i + num_keys] for i in range(0, len(ids), num_keys)]


def _write(documents, writers, eod: int, config: PreprocessConfig, summary, progress) -> None:
    for per_key in documents:
        for key, ids in zip(config.json_keys, per_key):
            if config.append_eod and ids:
                ids = [*ids, eod]
            writers[key].add_document(ids, [len(ids)] if ids else [])
            summary.tokens[key] += len(ids)
        summary.documents += 1
        progress.update(summary)


class _Progress:
    """Documents, MB/s and tokens/s on stderr every `interval` documents."""

    def __init__(self, interval: int):
        self.interval = max(1, interval)
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def update(self, summary: PreprocessSummary) -> None:
        if summary.documents % self.interval:
            return
        seconds = max(self.elapsed(), 1e-9)
        tokens = sum(summary.tokens.values())
        print(
            f"{summary.documents:,} documents | {summary.input_bytes / 1e6 / seconds:.1f} MB/s | "
            f"{tokens / seconds:,.0f} tokens/s",
            file=sys.stderr,
            flush=True,
        )
