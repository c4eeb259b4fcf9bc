"""One task of one stage: what a datatrove rank runs.

Every task reads only its own input (a byte range of the raw input for `extract`, its partition
files for the later stages: one, or every N-th with `engine.partition_tasks`, sharing one LLM
engine and tool environment), calls the stage method in batches, checkpoints each finished batch
(data_synthesis/engine/checkpoint.py) and finally writes its outputs atomically, then its
counters. Rerunning a killed task resumes from the checkpoint and skips the partitions it had
finished; rerunning a finished map task rewrites identical files. Each task prints progress
with an ETA (tqdm on stderr).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick
from tqdm import tqdm

from data_synthesis.config import PipelineConfig
from data_synthesis.engine.checkpoint import BatchCheckpoint, RequestCache
from data_synthesis.engine.io import (
    ZSTD_SUFFIX,
    InputError,
    InputFile,
    count_lines,
    describe,
    iter_jsonl,
    join_files,
    line_number,
    parse_document,
    read_lines,
    task_ranges,
    write_json,
    write_jsonl,
)
from data_synthesis.engine.memory_store import (
    Layout,
    PartitionedMemory,
    build_lookups,
    entities_file,
    reduce_partition,
    statements_file,
    write_statements,
)
from data_synthesis.engine.shuffle import ShuffleWriter
from data_synthesis.stage_api import Counters, StageContext


@dataclass(frozen=True)
class RunPlan:
    """Everything a task needs, picklable (datatrove ships it to SLURM nodes)."""

    out: str
    inputs: tuple[InputFile, ...]  # described once, when the run is planned
    config: PipelineConfig = field(hash=False)
    map_tasks: int
    partitions: int
    index_partitions: int  # of the value and relation look-ups (the value_index stage's tasks)
    partition_tasks: int = 0  # tasks of the partition stages; 0: one per partition
    trajectories: str | None = None
    config_dir: str | None = None  # custom tools' files are relative to the config file
    # the environment's index directory per list of corpora (planning, has: runner.jobs_for)
    indexes: tuple[tuple[tuple[str, ...], str], ...] = ()

    @property
    def root(self) -> Path:
        return Path(self.out)

    @property
    def input_paths(self) -> list[str]:
        return [f.path for f in self.inputs]


def counters_file(plan: RunPlan, stage: str, rank: int) -> Path:
    return plan.root / "counters" / stage / f"t{rank:05d}.json"


def requests_file(plan: RunPlan, stage: str, key: int) -> Path:
    return plan.root / "requests" / stage / f"t{key:05d}.jsonl"


# The partition stages' outputs, zstd-compressed (engine/io.py); a run directory planned with
# another format (its plain pP.jsonl would be skipped by the dedup stage) is refused by name.
OUTPUTS_FORMAT = "jsonl.zst"


def stage_output(plan: RunPlan, stage: str, partition: int) -> Path:
    folder = {"questions": "questions"}.get(stage, f"docs/{stage}")
    return plan.root / folder / f"p{partition:05d}.jsonl{ZSTD_SUFFIX}"


def _progress(stage: str, label: str, total: int | None, unit: str) -> tqdm:
    return tqdm(
        desc=f"[{stage} {label}]",
        total=total,
        unit=unit,
        unit_scale=unit == "B",
        file=sys.stderr,
        mininterval=5,
        leave=False,
    )


def heldout_docs_file(plan: RunPlan) -> Path:
    return plan.root / "eval" / "heldout_docs.txt"


def is_heldout_question(plan: RunPlan, question: dict) -> bool:
    from data_synthesis.eval.heldout import base_doc_id, heldout_doc, question_docs

    share = plan.config.heldout_share
    return share > 0 and any(
        heldout_doc(base_doc_id(d), share, plan.config.seed) for d in question_docs(question)
    )


def _environment(plan: RunPlan, stage: str, llm):
    """The tool environment of planning/has tasks: search over this run's input unless the
    config names other corpora; held-out documents hidden from the has rollouts."""
    from data_synthesis.environment.executor import environment_for

    raw = dict(plan.config.environment)
    raw.setdefault("corpora", plan.input_paths)
    config = dataclasses.replace(plan.config, environment=raw)
    from data_synthesis.eval.heldout import HeldoutRule

    share = plan.config.heldout_share
    heldout = HeldoutRule(share, plan.config.seed) if stage == "has" and share else None
    return environment_for(
        config, llm, heldout=heldout, base_dir=plan.config_dir, named=dict(plan.indexes)
    )


@dataclass
class TaskTools:
    """What a task builds once and every partition it covers shares: the LLM backend (a vLLM
    engine loads its model once per task, not once per partition) and the tool environment
    (its search index opened once)."""

    backend: object | None
    env: object | None
    tools: object

    @classmethod
    def build(cls, plan: RunPlan, stage: str) -> TaskTools:
        from data_synthesis.llm import build_backend

        backend = build_backend(plan.config.backend)
        env = _environment(plan, stage, backend) if stage in ("planning", "has") else None
        if env is not None:
            return cls(backend, env, env.registry)
        from data_synthesis.environment.registry import ToolRegistry

        return cls(backend, None, ToolRegistry.from_config(plan.config.tools, plan.config_dir))


def _context(
    plan: RunPlan, stage: str, key: int, counters: Counters, shared: TaskTools
) -> StageContext:
    """The stage method's context for one unit of work (`key`: a map task's rank or a
    partition): its finished LLM requests are logged under requests/<stage>/t<key>.jsonl."""
    backend = shared.backend
    if backend is not None:
        backend = RequestCache(backend, requests_file(plan, stage, key))
    if shared.env is not None:
        shared.env.llm = backend  # visit summaries replay with the rest
    return StageContext(
        config=plan.config,
        llm=backend,
        tools=shared.tools,
        env=shared.env,
        memory=PartitionedMemory(plan.root, Layout(plan.partitions, plan.index_partitions)),
        counters=counters,
        seed=plan.config.seed,
        stage=stage,
    )


def _batched(items: Iterator, size: int, max_chars: int) -> Iterator[list]:
    """Batches of at most `size` items and (past the first item) `max_chars` characters of
    text, so one batch of long documents stays bounded in memory."""
    batch, chars = [], 0
    for item in items:
        length = len(item.get("text") or "") if isinstance(item, dict) else 0
        if batch and chars + length > max_chars:
            yield batch
            batch, chars = [], 0
        batch.append(item)
        chars += length
        if len(batch) == size:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _one(_item) -> int:
    return 1


@dataclass(frozen=True)
class Work:
    """One unit of a task's work: a map task's byte ranges or one partition (`key`), its
    items, their total for the progress bar (`unit`s) and each item's share of it."""

    key: int
    items: Iterator
    total: int | None
    unit: str = "item"
    size_of: Callable[[dict], int] = _one


def _run_batches(plan, stage, work: Work, shared: TaskTools, label: str) -> BatchCheckpoint:
    """Run the stage method over `work`'s items in checkpointed batches; the checkpoint keeps
    the outputs and counters. `label` names the progress bar: "2/8" (map task 2 of 8) or
    "p17/64" (partition 17 of 64)."""
    from data_synthesis.stages import method_for

    checkpoint = BatchCheckpoint(plan.root / "checkpoints" / stage / f"t{work.key:05d}.partial")
    ctx = _context(plan, stage, work.key, Counters(), shared)
    method = method_for(stage, ctx.llm is not None)
    progress = _progress(stage, label, work.total, work.unit)
    try:
        engine = plan.config.engine
        for index, batch in enumerate(_batched(work.items, engine.batch_size, engine.batch_chars)):
            progress.update(sum(work.size_of(item) for item in batch))
            if index < checkpoint.done:
                continue
            ctx.counters = Counters()
            records = method.run(batch, ctx)
            if stage == "extract":
                _add_mentions(records)
            for record in records:
                if "id" not in record:
                    raise ValueError(f"stage {stage}: a record without an 'id': {record}")
            ctx.counters.add(stage, "in", len(batch))
            ctx.counters.add(stage, "out", len(records))
            checkpoint.append(index, records, ctx.counters)
    finally:
        progress.close()
        checkpoint.close()
    return checkpoint


# --- extract (map over the input) ----------------------------------------------------------


def _split_long(doc: dict, limit: int) -> list[dict]:
    """A document longer than `limit` characters as chunks cut at paragraph or sentence ends
    (ids `<id>#c<k>`), so the cost per document is bounded."""
    text = doc["text"]
    if len(text) <= limit:
        return [doc]
    chunks, start = [], 0
    while start < len(text):
        end = min(start + limit, len(text))
        if end < len(text):
            window = text[start:end]
            cut = max(window.rfind("\n\n"), window.rfind(". "))
            end = start + cut + 1 if cut > limit // 2 else end
        chunks.append({**doc, "id": f"{doc['id']}#c{len(chunks)}", "text": text[start:end]})
        start = end
    return chunks


def is_heldout_doc(plan: RunPlan, doc_id: str) -> bool:
    from data_synthesis.eval.heldout import heldout_doc

    return heldout_doc(str(doc_id), plan.config.heldout_share, plan.config.seed)


def _documents(
    plan: RunPlan, rank: int, world: int, counters: Counters, heldout: list
) -> Iterator[dict]:
    limit = plan.config.engine.max_document_chars
    for byte_range in task_ranges(list(plan.inputs), rank, world):
        lines = read_lines(byte_range)
        for offset, line in lines:
            doc = parse_document(byte_range.path, offset, line)
            if doc is None:
                continue
            counters.add("input", "documents")
            if plan.config.heldout_share and is_heldout_doc(plan, doc["id"]):
                counters.add("input", "heldout documents")
                heldout.append(doc["id"])
            counters.add("input", "tokens", len(doc["text"].split()))
            counters.add("input", "bytes", len(line))
            chunks = _split_long(doc, limit)
            if len(chunks) > 1:
                counters.add("input", "split documents")
            step = lines.advanced()  # on-disk bytes
            for i, chunk in enumerate(chunks):
                chunk["_bytes"] = step // len(chunks) + (i < step % len(chunks))
                yield chunk


_WORD_EDGE = re.compile(r"\w")


def _add_mentions(statements: list[dict]) -> None:
    """Each statement's `mentions`: the entities of its document (subjects and entity values)
    named in its sentence, found with one Aho-Corasick automaton per document - the time per
    sentence does not grow with the number of entities in the memory."""
    by_doc: dict[str, list[dict]] = {}
    for s in statements:
        by_doc.setdefault(str(s.get("source")), []).append(s)
    for group in by_doc.values():
        names: dict[str, str] = {}
        for s in group:
            names[s.get("entity_name") or s["entity"]] = s["entity"]
            value = s.get("value") or {}
            if value.get("type") == "entity" and value.get("entity"):
                names[value["text"]] = value["entity"]
        automaton = ahocorasick.Automaton()
        for name, key in names.items():
            if name:
                automaton.add_word(name.lower(), (len(name), key))
        automaton.make_automaton()
        for s in group:
            if "mentions" in s:
                continue
            sentence = str(s.get("sentence") or "").lower()
            found = set()
            for end, (length, key) in automaton.iter(sentence):
                start = end - length + 1
                before = sentence[start - 1] if start > 0 else " "
                after = sentence[end + 1] if end + 1 < len(sentence) else " "
                if not _WORD_EDGE.match(before) and not _WORD_EDGE.match(after):
                    found.add(key)
            found.discard(s["entity"])
            s["mentions"] = sorted(found)


def run_extract(plan: RunPlan, rank: int, world: int) -> None:
    input_counters, heldout = Counters(), []
    ranges = task_ranges(list(plan.inputs), rank, world)
    total = sum(r.end - r.start for r in ranges)
    documents = _documents(plan, rank, world, input_counters, heldout)
    work = Work(rank, documents, total, "B", lambda doc: doc.pop("_bytes", 0))
    shared = TaskTools.build(plan, "extract")
    checkpoint = _run_batches(plan, "extract", work, shared, f"{rank + 1}/{world}")
    with ShuffleWriter(statements_file(plan.root, rank), plan.partitions) as files:
        write_statements(files, checkpoint.records(), plan.partitions)
        files.commit()
    held = plan.root / "eval" / "heldout_docs" / f"t{rank:05d}.txt"
    held.parent.mkdir(parents=True, exist_ok=True)
    held.with_suffix(".tmp").write_text("".join(f"{d}\n" for d in heldout), encoding="utf-8")
    held.with_suffix(".tmp").replace(held)
    counters = checkpoint.counters()
    counters.merge(input_counters)
    _finish(plan, "extract", rank, counters, checkpoint)


def _finish(plan: RunPlan, stage: str, key: int, counters: Counters, checkpoint) -> None:
    """Mark a task's (or partition's) work finished - its counters, written last - and drop
    what only a resume needed: its checkpoint and its LLM request log (all the text the LLM
    wrote for it: at 1 TB as large as the outputs)."""
    write_json(counters_file(plan, stage, key), counters.to_dict())
    checkpoint.remove()
    requests_file(plan, stage, key).unlink(missing_ok=True)


# --- memory (reduce) -----------------------------------------------------------------------


def run_memory(plan: RunPlan, rank: int, world: int) -> None:
    engine = plan.config.engine
    counts = reduce_partition(
        plan.root,
        rank,
        Layout(plan.partitions, plan.index_partitions),
        engine.max_statements_per_entity,
    )
    if rank == 0:  # the held-out ids in input order, joined byte for byte (nothing held)
        join_files(
            sorted((plan.root / "eval" / "heldout_docs").glob("t*.txt")), heldout_docs_file(plan)
        )
    counters = Counters()
    for key, n in counts.items():
        counters.add("memory", key, n)
    write_json(counters_file(plan, "memory", rank), counters.to_dict())


def run_value_index(plan: RunPlan, rank: int, world: int) -> None:
    """Merge value/relation index partition `rank` across the reduce tasks (memory_store)."""
    counters = Counters()
    for key, n in build_lookups(plan.root, rank).items():
        counters.add("value_index", key, n)
    write_json(counters_file(plan, "value_index", rank), counters.to_dict())


# --- partition stages ----------------------------------------------------------------------


def partitions_of(plan: RunPlan, rank: int) -> range:
    """The partitions task `rank` of a partition stage covers: every `partition_tasks`-th one
    from `rank` (all partitions are about the same size: entities are hashed to them)."""
    return range(rank, plan.partitions, plan.partition_tasks or plan.partitions)


def _partition_work(plan: RunPlan, stage: str, partition: int) -> Work:
    if stage == "questions":
        source = entities_file(plan.root, partition)
    elif stage == "has" and plan.trajectories:
        return Work(partition, _trajectories(plan.trajectories, partition, plan.partitions), None)
    else:
        source = stage_output(plan, "questions", partition)
    items = iter_jsonl(source) if source.exists() else iter(())
    return Work(partition, items, count_lines(source))


def _trajectories(path: str, rank: int, world: int) -> Iterator[dict]:
    """User-supplied ReAct trajectories for HAS, this task's byte range only."""
    for byte_range in task_ranges(describe([Path(path)]), rank, world):
        for offset, line in read_lines(byte_range):
            if not line.strip():
                continue
            try:
                item = json.loads(line.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                item = None
            if not isinstance(item, dict) or not isinstance(item.get("steps"), list):
                raise InputError(
                    f"{path}:{line_number(path, offset)}: a trajectory needs id, question, steps"
                )
            yield item


def run_partition_stage(plan: RunPlan, stage: str, rank: int, world: int) -> None:
    """Task `rank` of a partition stage: each of its partitions in turn, one LLM backend and
    environment for all; a partition finished before a kill (its counters written last) is
    not redone."""
    shared = None
    for partition in partitions_of(plan, rank):
        if counters_file(plan, stage, partition).exists():
            continue
        shared = shared or TaskTools.build(plan, stage)
        _run_partition(plan, stage, partition, shared)


def _counted_styles(questions: Iterator[dict], counters: Counters) -> Iterator[dict]:
    """The training questions, each counted by style ("training factual": the summary's
    questions by style, from counters instead of a pass over every question file)."""
    for question in questions:
        counters.add("questions", f"training {question.get('style', 'unknown')}")
        yield question


def _run_partition(plan: RunPlan, stage: str, partition: int, shared: TaskTools) -> None:
    work = _partition_work(plan, stage, partition)
    checkpoint = _run_batches(plan, stage, work, shared, f"p{partition}/{plan.partitions}")
    counters = checkpoint.counters()
    if stage == "questions":
        held = plan.root / "eval" / "heldout_questions" / f"p{partition:05d}.jsonl"
        write_jsonl(held, (q for q in checkpoint.records() if is_heldout_question(plan, q)))
        records = _counted_styles(
            (q for q in checkpoint.records() if not is_heldout_question(plan, q)), counters
        )
        counters.add("questions", "heldout", sum(1 for _ in iter_jsonl(held)))
    else:
        records = checkpoint.records()
    write_jsonl(stage_output(plan, stage, partition), records)
    _finish(plan, stage, partition, counters, checkpoint)
