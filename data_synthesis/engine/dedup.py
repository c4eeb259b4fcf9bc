"""Near-duplicate removal and benchmark decontamination as sharded datatrove stages.

Near duplicates: datatrove's MinHash LSH stages over the synthesized documents
(docs/<stage>/pP.jsonl.zst): signatures (one task per partition), buckets (one task per LSH band and
hash range, more as the partitions grow), two sharded steps of ours in place of datatrove's
clusters step, and datatrove's filter (one task per partition). The band layout b x r is chosen
so that the collision threshold (1/b)^(1/r) is closest to `filters.near_duplicate_threshold`
(0.9 -> 11 bands x 23 rows).

Which documents go: a document is dropped when, in some band, it collides with an earlier
document (earlier = lower partition, then position). The buckets step writes each band's
colliding documents as consecutive pairs in that order, so the later document of every pair is
the one dropped, and the decision for a document needs only its own pairs: `Removals` sends each
pair's later document to its partition (in each buckets task, after datatrove's step), `RemoveIds`
(one task per partition) writes the partition's sorted ids in the `.remove` format datatrove's filter reads. Every task
holds at most one partition's ids, so memory per task stays flat as the input grows.

datatrove's clusters step instead holds a union-find over every pair of the corpus in one task
(its memory grows with the input) and keeps one document per connected component. Both keep the
first of a group of mutual duplicates and never keep both documents of a colliding pair; they
differ on chains: with A < B < C, A~C and B~C colliding but not A~B, the clusters step keeps A
alone, this keeps A and B (they are not near duplicates of each other as far as LSH saw).

The filter tasks also write the run's training documents: each kept document goes to
`final/fas/<task>.jsonl.zst` or `final/has/<task>.jsonl.zst` (fsspec's zstd level 10: HAS
documents 28x smaller, level 3 gives 18x; they are written once), and each task counts its
documents and words by kind (`SplitByKind`), so the finalize step reads counts, never the
documents.

Decontamination: in the same filter tasks, a document sharing any word n-gram (`filters.ngram`
words) with a text of the configured evaluation sets is dropped and counted. Each task loads the
n-gram hashes of the evaluation sets (small), never the synthesized documents whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import xxhash
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.dedup.minhash import (
    _mersenne_prime as _MERSENNE,  # the prime of its signatures, 2^61 - 1
)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.text import ngrams, simplify_text
from datatrove.utils.word_tokenizers import WordTokenizer

from data_synthesis.engine.io import allow_open_files, iter_jsonl, write_json
from data_synthesis.engine.shuffle import ShuffleWriter, partition_bytes, shuffle_files

_WORD = re.compile(r"\w+")
BAND_HASHES = 2  # a band's signature: a 124-bit hash of its minhashes, as two uint64
_LOW_64 = (1 << 64) - 1


class RegexWordTokenizer(WordTokenizer):
    """Words as \\w+ runs: datatrove's English tokenizers need spaCy, which this project does not
    install; MinHash shingles only need stable word boundaries."""

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"[^.!?]+[.!?]*", text)]


class Signatures(MinhashDedupSignature):
    """datatrove's MinHash signature step, its costs cut: ASCII text skips the per-character
    diacritics pass (the text is the same with or without it), shingles hash with xxh64
    instead of SHA-1 (together 2-3x faster on English text), the minhashes are datatrove's,
    number for number, computed over the document's distinct shingles with the modulo done
    by shifts (`minhashes`), and a band's r minhashes are stored as one 124-bit hash of them
    (`get_signature`): the LSH stages only ask whether two bands are equal, and 16 bytes in
    place of r x 8 make the signatures 9.4x smaller (11 bands x 23 rows at 0.9: they were
    the largest files of a run, ~30 TB at 1 TB of input). The LSH stages are datatrove's, on
    `stored_config`."""

    def __init__(self, output_folder: str, config: MinhashConfig, **kwargs):
        super().__init__(output_folder, config=config, **kwargs)  # num_hashes: bands x rows
        self.rows = config.hashes_per_bucket
        self.config = stored_config(config)  # what is written, sorted and read back

    def get_shingles(self, text: str) -> np.ndarray:
        norm = self.config.norm_config
        if text.isascii():
            norm = dataclasses.replace(norm, norm_unicode_diacritics=False)
        words = self.word_tokenizer.word_tokenize(simplify_text(text, norm))
        hashes = (
            xxhash.xxh64_intdigest(" ".join(gram).encode())
            for gram in ngrams(words, self.config.n_grams)
        )
        return np.fromiter(hashes, dtype=np.uint64).reshape((-1, 1))

    def minhashes(self, shingles: np.ndarray) -> np.ndarray:
        """datatrove's signature, min over shingles of (a * shingle + b) mod 2^61 - 1 per hash
        function, with the same numbers: over distinct shingles (a minimum over a set; a HAS
        document repeats its tool responses, so more than half of the shingles of the
        benchmark's documents are repeats), and with the Mersenne modulo as x & p + x >> 61,
        less p once (2^61 = 1 mod p), not numpy's uint64 division. 2.9x faster on the 10 MB
        benchmark's planning and HAS documents (docs/benchmarks.md)."""
        a, b = self.parameters
        hashed = np.unique(shingles)[:, None] * a  # uint64 arithmetic wraps, as datatrove's
        hashed += b
        high = hashed >> np.uint64(61)
        hashed &= _MERSENNE
        hashed += high
        np.subtract(hashed, _MERSENNE, out=hashed, where=hashed >= _MERSENNE)
        return hashed.min(axis=0)

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        """Each band's minhashes as two uint64: 124 bits of the 128-bit xxh3 of their bytes
        (two bands share them exactly when their minhashes are equal, but for a chance of
        2^-124). The first number stays below 2^60: datatrove's buckets step drops the
        signatures whose first number is not below the minhashes' prime, 2^61 - 1."""
        bands = self.minhashes(shingles).reshape(-1, self.rows)
        digests = (xxhash.xxh3_128_intdigest(band.tobytes()) for band in bands)
        return [[digest >> 68, digest & _LOW_64] for digest in digests]


def _ngram_hashes(text: str, n: int) -> set[bytes]:
    words = _WORD.findall(text.lower())
    return {
        hashlib.blake2b(" ".join(words[i : i + n]).encode(), digest_size=8).digest()
        for i in range(len(words) - n + 1)
    }


class Decontaminate(PipelineStep):
    """Drops documents that share a word n-gram with an evaluation set text."""

    name = "decontaminate"
    type = "🔬 - FILTER"

    def __init__(self, eval_sets: list[str], n: int, removed_folder: str):
        super().__init__()
        self.eval_sets, self.n, self.removed_folder = list(eval_sets), n, removed_folder
        self._grams: set[bytes] | None = None

    def _load(self) -> set[bytes]:
        if self._grams is None:
            self._grams = set()
            for path in self.eval_sets:
                for record in iter_jsonl(path):
                    text = record.get("text") or record.get("question") or ""
                    self._grams |= _ngram_hashes(str(text), self.n)
        return self._grams

    def run(self, data, rank: int = 0, world_size: int = 1):
        grams = self._load()
        removed = 0
        for document in data:
            if grams and _ngram_hashes(document.text, self.n) & grams:
                removed += 1
                self.stat_update("contaminated")
                continue
            yield document
        path = Path(self.removed_folder) / f"{rank:05d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"contaminated": removed}))


KEPT = ("fas", "has")  # final/<split>/<task>.jsonl: FAS (planning, reasoning) and HAS documents


def split_of(kind: str) -> str:
    return "has" if kind == "has" else "fas"


class SplitByKind(PipelineStep):
    """Routes each kept document to final/fas/ or final/has/ (the writer's `${split}`) and
    counts each kind's documents and words in COUNTS/<task>.json, so that no later step reads
    the documents again: the run's training files are these shards, written in parallel."""

    name = "split by kind"
    type = "📦 - FINAL"

    def __init__(self, counts_folder: str):
        super().__init__()
        self.counts_folder = counts_folder

    def run(self, data, rank: int = 0, world_size: int = 1):
        documents, words = Counter(), Counter()
        for document in data:
            kind = str(document.metadata.get("kind", "unknown"))
            document.metadata["split"] = split_of(kind)
            documents[kind] += 1
            words[kind] += len(document.text.split())
            yield document
        counts = {"documents": dict(documents), "tokens": dict(words)}
        write_json(Path(self.counts_folder) / f"{rank:05d}.json", counts)


def _kept_record(self, document) -> dict:
    """A kept document as written: the record without the routing field."""
    metadata = {k: v for k, v in document.metadata.items() if k != "split"}
    return {"id": document.id, "text": document.text, **metadata}


U32 = np.dtype("<u4")  # pairs are (file1, doc1, file2, doc2) as 4 x U32; positions are U32
PAIRS_PER_READ = 1 << 18
SENTINEL = (1 << 32) - 1  # datatrove's file id of an index match (no index is used here)


class OpenFiles(PipelineStep):
    """Lets the task hold `needed` files open (engine.io.allow_open_files), before a step that
    does: datatrove's MinhashDedupBuckets reads every signature task's file of its band at once,
    one per partition (16,384 in the 1 TB plan, past a cluster job's usual soft limit)."""

    name = "open files"
    type = "🫂 - DEDUP"

    def __init__(self, needed: int, what: str):
        super().__init__()
        self.needed, self.what = needed, what

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        allow_open_files(self.needed, self.what)
        return data


class Removals(PipelineStep):
    """Sends the later document of every duplicate pair to its partition's removal list: one
    file per task, REMOVALS/<task>.bin (uint32 positions grouped by partition, the offsets in
    its header: engine/shuffle.py). It runs after datatrove's buckets step in the same task and
    reads the pair file that task wrote (`bands` = the LSH band count).

    A rerun of a killed task rewrites its file whole (temporary files, renamed at the end)."""

    name = "dedup removals"
    type = "🫂 - DEDUP"

    def __init__(self, buckets_folder: str, removals_folder: str, bands: int, partitions: int):
        super().__init__()
        self.buckets_folder, self.removals_folder = buckets_folder, removals_folder
        self.bands, self.partitions = bands, partitions

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        band, worker = divmod(rank, world_size // self.bands)  # as MinhashDedupBuckets names it
        pairs = Path(self.buckets_folder) / f"{band:05d}_{worker:02d}.dups"
        written = set()
        path = Path(self.removals_folder) / f"{rank:05d}.bin"
        with ShuffleWriter(path, self.partitions) as files:
            for later in _later_documents(pairs):
                later = later[np.argsort(later[:, 0], kind="stable")]
                partitions, starts = np.unique(later[:, 0], return_index=True)
                partitions = partitions.tolist()
                for partition, rows in zip(partitions, np.split(later[:, 1], starts[1:])):
                    files.write(partition, rows.astype(U32).tobytes())
                    self.stat_update("pairs", value=len(rows))
                written.update(partitions)
            files.commit()
        self.stat_update("partitions written", value=len(written))


def _later_documents(path: Path):
    """(partition, position) of the later document of each pair in a `.dups` file, a chunk at a
    time; an out-of-order pair is an error naming the file (the rule depends on the order)."""
    read = 0
    with open(path, "rb") as handle:
        while True:
            pairs = np.fromfile(handle, dtype=U32, count=4 * PAIRS_PER_READ)
            if not len(pairs):
                return
            if len(pairs) % 4:
                raise ValueError(f"{path}: truncated pair record (size not a multiple of 16)")
            pairs = pairs.reshape(-1, 4).astype(np.int64)
            first, later = (pairs[:, 0] << 32) | pairs[:, 1], (pairs[:, 2] << 32) | pairs[:, 3]
            wrong = (pairs[:, 0] != SENTINEL) & (first >= later)
            if wrong.any():
                row = int(np.flatnonzero(wrong)[0])
                raise ValueError(
                    f"{path}: pair {read + row} is not (earlier, later): {pairs[row].tolist()}"
                )
            read += len(pairs)
            yield pairs[:, 2:]


class RemoveIds(PipelineStep):
    """Writes partition `rank`'s removal lists as REMOVE_IDS/<rank:06d>.remove: sorted, unique
    uint32 positions, the file datatrove's MinhashDedupFilter reads (written atomically)."""

    name = "dedup remove ids"
    type = "🫂 - DEDUP"

    def __init__(self, removals_folder: str, remove_ids_folder: str):
        super().__init__()
        self.removals_folder, self.remove_ids_folder = removals_folder, remove_ids_folder

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        parts = shuffle_files(Path(self.removals_folder), "*.bin")
        ids = np.unique(
            np.concatenate(
                [np.frombuffer(partition_bytes(p, rank), U32) for p in parts] or [np.empty(0, U32)]
            )
        )
        path = Path(self.remove_ids_folder) / f"{rank:06d}.remove"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        ids.tofile(tmp)
        tmp.replace(path)
        self.stat_update("to_remove", value=len(ids))


def _reader(out: Path) -> JsonlReader:
    return JsonlReader(
        str(out / "docs"),
        glob_pattern="*/p*.jsonl.zst",
        compression="zstd",
        text_key="text",
        id_key="id",
        add_file_path=False,
    )


def _record(self, document) -> dict:
    return {"id": document.id, "text": document.text, **document.metadata}


def lsh_bands(threshold: float, max_hashes: int = 256) -> tuple[int, int]:
    """(bands, rows per band) with b * r <= max_hashes whose collision threshold
    (1/b)^(1/r) is within 0.01 of `threshold`, with the most bands (best recall); else the
    closest."""
    candidates = []
    for bands in range(2, max_hashes + 1):
        rows = max(1, round(math.log(bands) / -math.log(threshold)))
        if bands * rows <= max_hashes:
            candidates.append((abs((1 / bands) ** (1 / rows) - threshold), bands, rows))
    close = [c for c in candidates if c[0] < 0.01]
    _, bands, rows = max(close, key=lambda c: c[1]) if close else min(candidates)
    return bands, rows


def minhash_config(config) -> MinhashConfig:
    """The LSH layout: `lsh_bands` bands of rows minhashes (what Signatures computes)."""
    bands, rows = lsh_bands(config.filters.near_duplicate_threshold)
    return MinhashConfig(
        hash_config=HashConfig(precision=64, hash_fc="sha1"),  # Signatures hashes with xxh64
        num_buckets=bands,
        hashes_per_bucket=rows,
        n_grams=5,
        seed=config.seed,
    )


def stored_config(mh: MinhashConfig) -> MinhashConfig:
    """The layout the stored signatures have (datatrove's buckets step reads them so): each
    band one 124-bit hash, two uint64 (Signatures.get_signature)."""
    return dataclasses.replace(mh, hashes_per_bucket=BAND_HASHES)


def dedup_jobs(out: Path, config, partitions: int) -> list[tuple[str, list, int]]:
    """(name, pipeline, tasks) of the four datatrove jobs, in dependency order; the buckets
    job gets one task per band and hash range, about one per partition."""
    out = Path(out)
    mh = minhash_config(config)
    work = out / "dedup"
    return [
        (
            "dedup-signatures",
            [
                _reader(out),
                Signatures(str(work / "signatures"), config=mh, language=RegexWordTokenizer()),
            ],
            partitions,
        ),
        (
            "dedup-buckets",
            [
                OpenFiles(partitions + 64, "dedup-buckets (a signature file per partition)"),
                MinhashDedupBuckets(
                    str(work / "signatures"), str(work / "buckets"), config=stored_config(mh)
                ),
                Removals(str(work / "buckets"), str(work / "removals"), mh.num_buckets, partitions),
            ],
            mh.num_buckets * max(1, partitions // mh.num_buckets),
        ),
        (
            "dedup-remove-ids",
            [RemoveIds(str(work / "removals"), str(work / "remove_ids"))],
            partitions,
        ),
        (
            "dedup-filter",
            [
                _reader(out),
                MinhashDedupFilter(
                    str(work / "remove_ids"),
                    exclusion_writer=JsonlWriter(
                        str(work / "removed"), compression="zstd", adapter=_record
                    ),
                ),
                Decontaminate(
                    config.filters.eval_sets, config.filters.ngram, str(work / "contaminated")
                ),
                SplitByKind(str(out / "final" / "counts")),
                JsonlWriter(
                    str(out / "final"),
                    output_filename="${split}/${rank}.jsonl",
                    compression="zstd",
                    adapter=_kept_record,
                ),
            ],
            partitions,
        ),
    ]


def removal_counts(out: Path) -> dict:
    """Documents dropped as near duplicates and as contaminated. The near duplicates are the
    ids of the `.remove` files (their sizes: nothing is read; the removed documents, which
    finalize decompressed to count until 2026-12-06, are ~5 TB of text at 1 TB of input)."""
    work = Path(out) / "dedup"
    near = sum(p.stat().st_size for p in work.glob("remove_ids/*.remove")) // U32.itemsize
    contaminated = sum(
        json.loads(p.read_text())["contaminated"] for p in sorted(work.glob("contaminated/*.json"))
    )
    return {"near duplicate": near, "contaminated": contaminated}
