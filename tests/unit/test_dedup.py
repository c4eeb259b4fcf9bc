"""The dedup stage's datatrove jobs (data_synthesis/engine/dedup.py) on documents with planted
near-duplicates spread over partitions: each group keeps its first document, every dropped
document is the later one of a pair LSH found, no kept pair collides; decontamination drops a
document that shares an n-gram with an evaluation set. The sharded removal steps rerun after a
kill rewrite their files whole, and an out-of-order pair file is an error naming it. A buckets
task may open a signature file per partition, past a job's soft open-files limit."""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datatrove.executor import LocalPipelineExecutor

from data_synthesis.config import PipelineConfig
from data_synthesis.engine.dedup import (
    RegexWordTokenizer,
    Removals,
    RemoveIds,
    dedup_jobs,
    removal_counts,
)
from data_synthesis.engine.io import iter_jsonl, write_jsonl

PARTITIONS = 3
# letters only: MinHash's text normalisation maps every digit to 0
WORDS = ["".join(random.Random(i).choices("abcdefghij", k=5)) for i in range(5000)]


def _text(rng: random.Random, words: int = 1000) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _one_word_changed(rng: random.Random, text: str) -> str:
    words = text.split()
    words[rng.randrange(len(words))] = "changed"
    return " ".join(words)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 unique documents and 4 groups of 3 near copies (one word changed), dealt round-robin
    over the partitions so groups cross them; one unique document quotes the evaluation set."""
    rng = random.Random(7)
    out = tmp_path_factory.mktemp("dedup")
    docs = [{"id": f"u{i}", "text": _text(rng)} for i in range(12)]
    groups = []
    for g in range(4):
        base = _text(rng)
        groups.append([f"g{g}-{c}" for c in range(3)])
        docs += [{"id": f"g{g}-{c}", "text": _one_word_changed(rng, base)} for c in range(3)]
    rng.shuffle(docs)
    quoting = next(d for d in docs if d["id"].startswith("u"))
    quoted = quoting["text"].split()[100:120]
    eval_set = out / "eval.jsonl"
    eval_set.write_text(json.dumps({"question": " ".join(quoted)}) + "\n")
    for p in range(PARTITIONS):
        write_jsonl(out / "docs" / "planning" / f"p{p:05d}.jsonl.zst", docs[p::PARTITIONS])
    config = PipelineConfig()
    config.filters.eval_sets = [str(eval_set)]
    for name, pipeline, tasks in dedup_jobs(out, config, PARTITIONS):
        LocalPipelineExecutor(
            pipeline=pipeline, tasks=tasks, logging_dir=str(out / "logs" / name)
        ).run()
    return out, docs, groups, quoting["id"]


def _position(docs: list[dict]) -> dict[str, tuple[int, int]]:
    """(partition, position in it) of each document id: the order the rule uses."""
    return {d["id"]: (i % PARTITIONS, i // PARTITIONS) for i, d in enumerate(docs)}


def _ids(folder: Path) -> set[str]:
    return {d["id"] for f in folder.glob("*.jsonl.zst") for d in iter_jsonl(f)}


def _kept(out: Path) -> set[str]:
    """The documents the filter tasks wrote to final/fas/ and final/has/."""
    return _ids(out / "final/fas") | _ids(out / "final/has")


def test_each_group_keeps_its_first_document_and_decontamination_drops_the_quote(corpus):
    out, docs, groups, quoting = corpus
    position = _position(docs)
    kept, removed = _kept(out), _ids(out / "dedup/removed")
    first = {min(group, key=position.get) for group in groups}
    uniques = {d["id"] for d in docs if d["id"].startswith("u")}
    assert kept == (uniques | first) - {quoting}
    assert removed == {i for group in groups for i in group} - first
    counts = [json.loads(f.read_text()) for f in (out / "dedup/contaminated").glob("*.json")]
    assert sum(c["contaminated"] for c in counts) == 1
    assert removal_counts(out) == {"near duplicate": len(removed), "contaminated": 1}


def test_every_drop_is_the_later_document_of_a_pair_and_no_kept_pair_collides(corpus):
    out, docs, _, quoting = corpus
    by_position = {v: k for k, v in _position(docs).items()}
    pairs = np.concatenate(
        [np.fromfile(f, dtype="<u4").reshape(-1, 4) for f in (out / "dedup/buckets").glob("*.dups")]
    )
    assert len(pairs)
    earlier = {by_position[(int(f), int(d))] for f, d in pairs[:, :2]}
    later = {by_position[(int(f), int(d))] for f, d in pairs[:, 2:]}
    removed = _ids(out / "dedup/removed")
    assert removed == later
    assert not any(
        by_position[(int(a), int(b))] not in removed
        and by_position[(int(c), int(d))] not in removed
        for a, b, c, d in pairs
    )
    assert earlier - later <= _kept(out) | {quoting}


def _pairs(folder: Path) -> set[tuple[int, ...]]:
    """(band, earlier file, doc, later file, doc) of every colliding pair in `folder`."""
    return {
        (int(f.name[:5]), *map(int, quad))
        for f in folder.glob("*.dups")
        for quad in np.fromfile(f, dtype="<u4").reshape(-1, 4)
    }


def test_a_bands_hash_finds_the_pairs_its_minhashes_find(corpus, tmp_path):
    """Each band is stored as a 124-bit hash of its 23 minhashes: datatrove's buckets step
    over them finds the same colliding pairs, band by band, as over the minhashes themselves
    (datatrove's layout before), from 9.4x fewer signature bytes."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets

    from data_synthesis.engine.dedup import Signatures, _reader, minhash_config

    out, mh = corpus[0], minhash_config(PipelineConfig())

    class Minhashes(Signatures):  # the minhashes themselves, as datatrove stores them
        def __init__(self, folder):
            super().__init__(folder, config=mh, language=RegexWordTokenizer())
            self.config = mh

        def get_signature(self, shingles):
            return self.minhashes(shingles).reshape(mh.num_buckets, -1).tolist()

    jobs = [
        ([_reader(out), Minhashes(str(tmp_path / "signatures"))], PARTITIONS),
        (
            [
                MinhashDedupBuckets(
                    str(tmp_path / "signatures"), str(tmp_path / "buckets"), config=mh
                )
            ],
            mh.num_buckets,
        ),
    ]
    for number, (pipeline, tasks) in enumerate(jobs):
        LocalPipelineExecutor(
            pipeline=pipeline, tasks=tasks, logging_dir=str(tmp_path / "logs" / str(number))
        ).run()
    pairs = _pairs(out / "dedup/buckets")
    assert len(pairs) >= 8 and pairs == _pairs(tmp_path / "buckets")
    sizes = [
        sum(f.stat().st_size for f in (root / "signatures").rglob("*.sig"))
        for root in (tmp_path, out / "dedup")
    ]
    assert sizes[0] == sizes[1] * (23 * 8 + 4) // (2 * 8 + 4)


def test_a_rerun_after_a_kill_rewrites_the_removal_files_whole(corpus, tmp_path):
    out = corpus[0]
    buckets, work = out / "dedup/buckets", tmp_path / "work"
    for stale in ("00000.bin.tmp", "00000.bin.run3.tmp"):  # a killed task's half-written files
        (work / "removals").mkdir(parents=True, exist_ok=True)
        (work / "removals" / stale).write_bytes(b"\x01\x02\x03")
    files = sorted(buckets.glob("*.dups"))
    assert len(files) == 11  # one per band: each task wrote its own, read by Removals
    for rank in range(len(files)):
        Removals(str(buckets), str(work / "removals"), 11, PARTITIONS).run(
            rank=rank, world_size=len(files)
        )
    assert len(list((work / "removals").glob("*.bin"))) == 11  # one per task, not per partition
    for partition in range(PARTITIONS):
        RemoveIds(str(work / "removals"), str(work / "remove_ids")).run(rank=partition)
        name = f"remove_ids/{partition:06d}.remove"
        assert (work / name).read_bytes() == (out / "dedup" / name).read_bytes()
    assert not list(work.rglob("*.tmp"))


def test_an_out_of_order_pair_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "buckets").mkdir()
    bad = tmp_path / "buckets" / "00000_00.dups"
    np.array([1, 5, 0, 9], dtype="<u4").tofile(bad)  # (1, 5) after (0, 9)
    with pytest.raises(ValueError, match="00000_00.dups: pair 0 is not"):
        Removals(str(tmp_path / "buckets"), str(tmp_path / "removals"), 1, 2).run(rank=0)


def _buckets_task(
    folder: Path, partitions: int, with_open_files: bool
) -> subprocess.CompletedProcess:
    """One dedup-buckets task (band 0) over `partitions` signature files, in a process whose soft
    open-files limit is 128, as a cluster job's often is (1,024) relative to 16,384 partitions."""
    steps = "[OpenFiles(n + 64, 'dedup-buckets'), buckets]" if with_open_files else "[buckets]"
    code = f"""
import resource, sys
from data_synthesis.config import PipelineConfig
from data_synthesis.engine.dedup import OpenFiles, minhash_config, stored_config
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets
resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
n, folder = {partitions}, {str(folder)!r}
mh = stored_config(minhash_config(PipelineConfig()))
buckets = MinhashDedupBuckets(folder + "/signatures", folder + "/buckets", config=mh)
data = None
for step in {steps}:
    data = step(data, 0, mh.num_buckets)
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_a_buckets_task_may_open_a_signature_file_per_partition(tmp_path):
    """datatrove's MinhashDedupBuckets opens every signature file of its band at once (one per
    partition): past the soft open-files limit it fails, unless `OpenFiles` raises that limit
    (to the hard one) first; a hard limit too low is an error naming the job."""
    from datatrove.data import Document

    from data_synthesis.engine.dedup import OpenFiles, Signatures, minhash_config
    from data_synthesis.engine.io import allow_open_files

    partitions, rng = 300, random.Random(3)
    mh = minhash_config(PipelineConfig())
    signatures = Signatures(str(tmp_path / "signatures"), config=mh, language=RegexWordTokenizer())
    for rank in range(partitions):
        doc = Document(text=_text(rng, 50), id=f"d{rank}")
        signatures.run(iter([doc]), rank=rank, world_size=partitions)
    failed = _buckets_task(tmp_path, partitions, with_open_files=False)
    assert failed.returncode != 0 and "Too many open files" in failed.stderr
    done = _buckets_task(tmp_path, partitions, with_open_files=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list((tmp_path / "buckets").glob("00000_*.dups"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        with pytest.raises(OSError, match=r"dedup-buckets needs .* files open at once"):
            allow_open_files(hard + 1, "dedup-buckets")
    assert OpenFiles(10, "x").run(None) is None


def test_shingles_are_the_word_ngrams_hashed():
    """A shingle per run of 5 words (none for a shorter text), equal runs equal hashes wherever
    they stand, a changed word changing exactly the 5 shingles holding it, and the order of
    the words counting."""
    from data_synthesis.engine.dedup import Signatures, minhash_config

    ours = Signatures(
        "/tmp", config=minhash_config(PipelineConfig()), language=RegexWordTokenizer()
    )
    rng = random.Random(11)
    words = [rng.choice(WORDS[:40]) for _ in range(400)]
    text = " ".join(words)
    shingles = ours.get_shingles(text).ravel()
    assert len(shingles) == 396 and ours.get_shingles(" ".join(words[:4])).size == 0
    grams = [tuple(words[i : i + 5]) for i in range(396)]
    first = {}
    for gram, value in zip(grams, shingles.tolist()):
        assert first.setdefault(gram, value) == value
    assert len(set(shingles.tolist())) == len(set(grams))  # no two different 5-grams collide
    changed = ours.get_shingles(" ".join([*words[:200], "changed", *words[201:]])).ravel()
    assert np.flatnonzero(changed != shingles).tolist() == list(range(196, 201))
    a, b, *rest = WORDS[:5]
    assert ours.get_shingles(" ".join([a, b, *rest])) != ours.get_shingles(" ".join([b, a, *rest]))


def test_signatures_are_datatroves_numbers(tmp_path):
    """Signatures.minhashes (distinct shingles, Mersenne modulo by shifts) gives datatrove's
    numbers for the same shingles: repeated shingles, values across the whole uint64 range
    (products that wrap, sums at and above the prime), one shingle and many."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    from data_synthesis.engine.dedup import Signatures, minhash_config

    mh = minhash_config(PipelineConfig())
    ours = Signatures(str(tmp_path / "a"), config=mh, language=RegexWordTokenizer())
    theirs = MinhashDedupSignature(str(tmp_path / "b"), config=mh, language=RegexWordTokenizer())

    class Same:  # our minhashes, in datatrove's bands
        def get_signature(self, shingles):
            return ours.minhashes(shingles).reshape(mh.num_buckets, -1).tolist()

    rng = np.random.default_rng(0)
    top = np.iinfo(np.uint64).max
    for size in (1, 2, 7, 300, 5000):
        shingles = rng.integers(0, top, size=size, dtype=np.uint64, endpoint=True)
        extremes = np.array([0, top][: min(size, 2)], dtype=np.uint64)  # not through float64
        shingles = np.concatenate([shingles, shingles[: size // 2], extremes])
        assert shingles.dtype == np.uint64 and (size < 2 or shingles.max() == top)
        shingles = rng.permutation(shingles).reshape(-1, 1)
        assert Same().get_signature(shingles) == theirs.get_signature(shingles), size
    # shingles whose a * s + b wraps to exactly the prime p or to 2^64 - 1 (p + 7 after the
    # shifts: the reduction's last step, which random shingles almost never need)
    multipliers, offsets = (row[0].tolist() for row in ours.parameters)
    j = next(j for j, a in enumerate(multipliers) if a % 2)  # odd: invertible mod 2^64
    inverse, wrap = pow(multipliers[j], -1, 1 << 64), (1 << 64) - 1
    for target in ((1 << 61) - 1, wrap, (1 << 62) - 2):
        shingle = ((target - offsets[j]) * inverse) & wrap
        assert (shingle * multipliers[j] + offsets[j]) & wrap == target
        shingles = np.array([[shingle]], dtype=np.uint64)
        assert Same().get_signature(shingles) == theirs.get_signature(shingles), target
