"""JSONL -> Megatron indexed datasets, streaming, at the tokenizer's own speed.

Documents are tokenized as Megatron-LM's tools/preprocess_data.py does, flag for flag, so the
output is byte-identical to its output (tests/integration/test_upstream_compat.py compares against files its
own script wrote): every text (or every sentence, with `--split-sentences` or the pre-split
`"text": [sentences]` form) is one sequence, empty ones are dropped, and with `append_eod` the
tokenizer's EOD ends every non-empty document. `--partitions N` deals the input's lines
round-robin to N processes (or in N contiguous runs with `--keep-sequential-samples`) and merges
the parts in partition order, which is upstream's document order.

The hot path is the tokenizer library's own multi-threaded batch encoder, run in a background
thread (it releases the GIL) while the main thread reads and parses the next batch. Input is
streamed and outputs are written under temporary names (partition parts in a `.partial-parts`
folder), so memory stays flat in the input size and a failed or killed run leaves nothing that
looks complete. Beside each finished dataset a small `{prefix}.meta/info.json` records the
tokenizer, the counts and the largest token id, which the trainer checks (data/checks.py);
Megatron's .bin/.idx files themselves are unchanged.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from megatron_agentic.data.checks import remove_meta, write_meta
from megatron_agentic.data.indexed import (
    IndexedDatasetWriter,
    bin_path,
    idx_path,
    merge_datasets,
    token_dtype,
)
from megatron_agentic.data.jsonl import (
    BadLineError,
    count_lines,
    expand_inputs,
    field_sentences,
    read_lines,
)


class OutputError(OSError):
    """The output prefix cannot be written (named, with the reason)."""


@dataclass
class PreprocessConfig:
    """The options of tools/preprocess_data.py (Megatron-LM's names and meanings)."""

    input: list[str]
    output_prefix: str
    tokenizer_type: str
    tokenizer_model: str | None = None
    json_keys: list[str] = field(default_factory=lambda: ["text"])
    split_sentences: bool = False
    keep_newlines: bool = False
    lang: str = "english"
    nltk_data: str | None = None
    append_eod: bool = False
    eod_token: str | None = None
    vocab_file: str | None = None
    merge_file: str | None = None
    vocab_size: int | None = None
    tiktoken_pattern: str | None = None
    tiktoken_num_special_tokens: int = 1000
    workers: int = 1
    partitions: int = 1
    keep_sequential_samples: bool = False
    log_interval: int = 10000
    skip_bad_lines: bool = False
    batch_size: int = 1024

    @property
    def level(self) -> str:
        """Upstream's output name part: `sentence` with --split-sentences, else `document`."""
        return "sentence" if self.split_sentences else "document"

    def build_tokenizer(self):
        from megatron_agentic.tokenizer import build_tokenizer

        return build_tokenizer(
            self.tokenizer_type,
            self.tokenizer_model,
            vocab_file=self.vocab_file,
            merge_file=self.merge_file,
            vocab_size=self.vocab_size,
            eod_token=self.eod_token,
            tiktoken_pattern=self.tiktoken_pattern,
            tiktoken_num_special_tokens=self.tiktoken_num_special_tokens,
        )


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

    def add(self, part: PreprocessSummary) -> None:
        self.documents += part.documents
        self.skipped_lines += part.skipped_lines
        self.input_bytes += part.input_bytes
        for key, count in part.tokens.items():
            self.tokens[key] = self.tokens.get(key, 0) + count


def output_prefix(prefix: str, key: str, level: str = "document") -> str:
    """Megatron-LM's output naming: `{prefix}_{key}_{document|sentence}`."""
    return f"{prefix}_{key}_{level}"


def check_output_prefix(prefix: str) -> None:
    """Create the prefix's folder and prove it writable, or one OutputError saying why."""
    parent = Path(prefix).parent
    for folder in (parent, *parent.parents):
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--output-prefix {prefix}: {folder} is a file, not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent, prefix=".write-probe-"):
            pass
    except OSError as error:
        raise OutputError(
            f"--output-prefix {prefix}: cannot write in {parent}: {error.strerror or error}"
        ) from None


def preprocess(config: PreprocessConfig) -> PreprocessSummary:
    """Run the whole conversion; with several partitions, one process per partition, then merge."""
    files = expand_inputs(config.input)
    check_output_prefix(config.output_prefix)
    for key in config.json_keys:  # a stale pair must never mix with a new half-written one
        prefix = output_prefix(config.output_prefix, key, config.level)
        for path in (bin_path(prefix), idx_path(prefix)):
            if os.path.exists(path):
                os.remove(path)
        remove_meta(prefix)
    if config.partitions == 1:
        return _preprocess_files(config, files, config.output_prefix, config.workers)
    return _preprocess_partitions(config, files)


@dataclass
class Selection:
    """Which input lines (by index among non-blank lines) one partition takes: every
    `partitions`-th from `part` (round-robin), or the contiguous run [start, stop)."""

    part: int = 0
    partitions: int = 1
    start: int = 0
    stop: int | None = None

    def __contains__(self, index: int) -> bool:
        if self.stop is not None:
            return self.start <= index < self.stop
        return index % self.partitions == self.part

    def label(self) -> str:
        return f"[part {self.part + 1}/{self.partitions}] " if self.partitions > 1 else ""


def _selections(config: PreprocessConfig, files: list[Path]) -> list[Selection]:
    n = config.partitions
    if not config.keep_sequential_samples:
        return [Selection(p, n) for p in range(n)]
    size = math.ceil(count_lines(files) / n)
    return [Selection(p, n, p * size, (p + 1) * size) for p in range(n)]


def _preprocess_partitions(config: PreprocessConfig, files: list[Path]) -> PreprocessSummary:
    from multiprocessing import get_context

    parts_dir = Path(f"{config.output_prefix}.partial-parts")
    shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir(parents=True)
    part_prefixes = [str(parts_dir / f"part{i:05d}") for i in range(config.partitions)]
    workers = max(1, config.workers // config.partitions)
    start = time.perf_counter()
    try:
        with get_context("spawn").Pool(config.partitions) as pool:
            parts = pool.starmap(
                _preprocess_files,
                [
                    (config, files, prefix, workers, selection)
                    for prefix, selection in zip(part_prefixes, _selections(config, files))
                ],
            )
        summary = PreprocessSummary(tokens={key: 0 for key in config.json_keys})
        for part in parts:
            summary.add(part)
        for key in config.json_keys:
            final = output_prefix(config.output_prefix, key, config.level)
            merge_datasets([output_prefix(p, key, config.level) for p in part_prefixes], final)
            summary.outputs.append(final)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _preprocess_files(
    config: PreprocessConfig,
    files: list[Path],
    prefix: str,
    workers: int,
    selection: Selection | None = None,
) -> PreprocessSummary:
    _set_tokenizer_threads(workers)
    tokenizer = config.build_tokenizer()
    splitter = None
    if config.split_sentences:
        from megatron_agentic.data.sentences import load_splitter

        splitter = load_splitter(config.lang, config.keep_newlines, config.nltk_data)
    dtype = token_dtype(tokenizer.vocab_size)
    writers = {
        k: IndexedDatasetWriter(output_prefix(prefix, k, config.level), dtype)
        for k in config.json_keys
    }
    summary = PreprocessSummary(tokens={key: 0 for key in config.json_keys})
    progress = _Progress(config.log_interval, files, (selection or Selection()).label())
    lines = read_lines(files)
    if selection is not None:
        lines = (line for line in lines if line.index in selection)
    try:
        with ThreadPoolExecutor(1) as encoder:
            pending = None
            for batch in _batches(lines, config, splitter, summary, progress):
                future = encoder.submit(_encode_batch, tokenizer, batch)
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
    for writer in writers.values():
        write_meta(writer, tokenizer.record())
    summary.seconds = progress.elapsed()
    summary.outputs = [w.prefix for w in writers.values()]
    return summary


def _set_tokenizer_threads(workers: int) -> None:
    # The Rust tokenizer parallelises encode_batch only when allowed, over RAYON_NUM_THREADS.
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if workers > 1 else "false"
    os.environ["RAYON_NUM_THREADS"] = str(max(1, workers))


@dataclass
class _Batch:
    """Documents' texts flattened for one encoder call, and how to regroup them."""

    texts: list[str] = field(default_factory=list)
    shapes: list[list[int]] = field(default_factory=list)  # per document, sentences per key


def _batches(lines, config: PreprocessConfig, splitter, summary, progress):
    """`batch_size` documents at a time."""
    batch = _Batch()
    for line in lines:
        summary.input_bytes += len(line.raw)
        progress.done_bytes = line.done_bytes
        try:
            fields = field_sentences(line, config.json_keys)
        except BadLineError as error:
            if not config.skip_bad_lines:
                raise
            summary.skipped_lines += 1
            print(f"skipping {error}", file=sys.stderr)
            continue
        if splitter is not None:
            fields = [[s for text in texts for s in splitter(text)] for texts in fields]
        batch.shapes.append([len(texts) for texts in fields])
        for texts in fields:
            batch.texts.extend(texts)
        if len(batch.shapes) >= config.batch_size:
            yield batch
            batch = _Batch()
    if batch.shapes:
        yield batch


def _encode_batch(tokenizer, batch: _Batch) -> list[list[list[list[int]]]]:
    """Per document, per key, the token ids of each sentence."""
    ids = iter(tokenizer.tokenize_batch(batch.texts) if batch.texts else [])
    return [[[next(ids) for _ in range(n)] for n in shape] for shape in batch.shapes]


def _write(documents, writers, eod: int, config: PreprocessConfig, summary, progress) -> None:
    for per_key in documents:
        for key, sentences in zip(config.json_keys, per_key):
            tokens: list[int] = []
            lengths: list[int] = []
            for ids in sentences:
                if len(ids):
                    tokens.extend(ids)
                    lengths.append(len(ids))
            if tokens and config.append_eod:
                tokens.append(eod)
                lengths[-1] += 1
            writers[key].add_document(tokens, lengths)
            summary.tokens[key] += len(tokens)
        summary.documents += 1
        progress.update(summary)


class _Progress:
    """Documents, percent of the input read, MB/s, tokens/s and ETA on stderr every `interval`
    documents (the percentage counts on-disk bytes, so compressed input is measured too)."""

    def __init__(self, interval: int, files: list[Path], label: str = ""):
        self.interval = max(1, interval)
        self.start = time.perf_counter()
        self.total_bytes = sum(f.stat().st_size for f in files)
        self.done_bytes = 0
        self.label = label

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def update(self, summary: PreprocessSummary) -> None:
        if summary.documents % self.interval:
            return
        seconds = max(self.elapsed(), 1e-9)
        tokens = sum(summary.tokens.values())
        fraction = min(1.0, self.done_bytes / max(self.total_bytes, 1))
        eta = seconds * (1 - fraction) / fraction if fraction > 0 else float("nan")
        print(
            f"{self.label}{summary.documents:,} documents | {100 * fraction:.1f}% | "
            f"{summary.input_bytes / 1e6 / seconds:.1f} MB/s | {tokens / seconds:,.0f} tokens/s | "
            f"elapsed {_clock(seconds)} | ETA {_clock(eta)}",
            file=sys.stderr,
            flush=True,
        )


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
