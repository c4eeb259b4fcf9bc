"""One task of one stage: what a datatrove rank runs.

Every task reads only its own input (a byte range of the raw input for `extract`, one partition
file for the later stages), calls the stage method in batches, checkpoints each finished batch
(data_synthesis/engine/checkpoint.py) and finally writes its outputs atomically, then its
counters. Rerunning a killed task resumes from the checkpoint; rerunning a finished one rewrites
identical files. Each task prints progress with an ETA (tqdm on stderr).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick
from tqdm import tqdm

from data_synthesis.config import PipelineConfig
from data_synthesis.engine.checkpoint import BatchCheckpoint, RequestCache
from data_synthesis.engine.io import (
    InputError,
    PartitionFiles,
    dumps,
    iter_jsonl,
    line_number,
    parse_document,
    read_lines,
    task_ranges,
    write_json,
    write_jsonl,
)
from data_synthesis.engine.memory_store import (
    PartitionedMemory,
    build_lookups,
    entities_file,
    entity_partition,
    reduce_partition,
    statements_file,
)
from data_synthesis.stage_api import Counters, StageContext


@dataclass(frozen=True)
class RunPlan:
    """Everything a task needs, picklable (datatrove ships it to SLURM nodes)."""

    out: str
    inputs: tuple[str, ...]
    config: PipelineConfig = field(hash=False)
    map_tasks: int
    partitions: int
    trajectories: str | None = None
    config_dir: str | None = None  # custom tools' files are relative to the config file

    @property
    def root(self) -> Path:
        return Path(self.out)


def counters_file(plan: RunPlan, stage: str, rank: int) -> Path:
    return plan.root / "counters" / stage / f"t{rank:05d}.json"


def stage_output(plan: RunPlan, stage: str, partition: int) -> Path:
    folder = {"questions": "questions"}.get(stage, f"docs/{stage}")
    return plan.root / folder / f"p{partition:05d}.jsonl"


def _progress(stage: str, rank: int, world: int, total: int, unit: str) -> tqdm:
    return tqdm(
        desc=f"[{stage} {rank + 1}/{world}]",
        total=total,
        unit=unit,
        unit_scale=unit == "B",
        file=sys.stderr,
        mininterval=5,
        leave=False,
    )


def heldout_docs_file(plan: RunPlan) -> Path:
    return plan.root / "eval" / "heldout_docs.txt"


def base_doc_id(doc_id: str) -> str:
    """The input document of a chunk id ("<id>#c3" -> "<id>")."""
    return re.sub(r"#c\d+$", "", str(doc_id))


def is_heldout_question(plan: RunPlan, question: dict) -> bool:
    from data_synthesis.eval.heldout import heldout_doc, question_docs

    share = plan.config.heldout_share
    return share > 0 and any(
        heldout_doc(base_doc_id(d), share, plan.config.seed) for d in question_docs(question)
    )


def _environment(plan: RunPlan, stage: str, llm):
    """The tool environment of planning/has tasks: search over this run's input unless the
    config names other corpora; held-out documents hidden from the has rollouts."""
    from data_synthesis.environment.executor import environment_for

    raw = dict(plan.config.environment)
    raw.setdefault("corpora", list(plan.inputs))
    config = dataclasses.replace(plan.config, environment=raw)
    exclude = heldout_docs_file(plan) if stage == "has" and plan.config.heldout_share else None
    return environment_for(
        config,
        llm,
        exclude_docs_file=str(exclude) if exclude else None,
        base_dir=plan.config_dir,
    )


def _context(plan: RunPlan, stage: str, rank: int, counters: Counters) -> StageContext:
    from data_synthesis.llm import build_backend

    config = plan.config
    backend = build_backend(config.backend)
    if backend is not None:
        backend = RequestCache(backend, plan.root / "requests" / stage / f"t{rank:05d}.jsonl")
    env = _environment(plan, stage, backend) if stage in ("planning", "has") else None
    if env is not None:
        tools = env.registry
    else:
        from data_synthesis.environment.registry import ToolRegistry

        tools = ToolRegistry.from_config(config.tools, base_dir=plan.config_dir)
    return StageContext(
        config=config,
        llm=backend,
        tools=tools,
        env=env,
        memory=PartitionedMemory(plan.root, plan.partitions),
        counters=counters,
        seed=config.seed,
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


def _run_batches(plan, stage, rank, world, items, total, unit, size_of) -> BatchCheckpoint:
    """Run the stage method over `items` in checkpointed batches; returns the task's counters
    (the checkpoint keeps the outputs)."""
    from data_synthesis.stages import method_for

    checkpoint = BatchCheckpoint(plan.root / "checkpoints" / stage / f"t{rank:05d}.partial")
    counters = Counters()
    ctx = _context(plan, stage, rank, counters)
    method = method_for(stage, ctx.llm is not None)
    progress = _progress(stage, rank, world, total, unit)
    try:
        engine = plan.config.engine
        for index, batch in enumerate(_batched(items, engine.batch_size, engine.batch_chars)):
            progress.update(sum(size_of(item) for item in batch))
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
    for byte_range in task_ranges([Path(p) for p in plan.inputs], rank, world):
        for offset, line in read_lines(byte_range):
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
            for chunk in chunks:
                chunk["_bytes"] = len(line) // len(chunks)
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
    ranges = task_ranges([Path(p) for p in plan.inputs], rank, world)
    total = sum(r.end - r.start for r in ranges)
    checkpoint = _run_batches(
        plan,
        "extract",
        rank,
        world,
        _documents(plan, rank, world, input_counters, heldout),
        total,
        "B",
        lambda doc: doc.pop("_bytes", 0),
    )
    with PartitionFiles(lambda p: statements_file(plan.root, p, rank)) as files:
        for record in checkpoint.records():
            p = entity_partition(record["entity"], plan.partitions)
            files.write(p, (dumps(record) + "\n").encode("utf-8"))
        written = files.commit()
    for p in set(range(plan.partitions)) - written:
        statements_file(plan.root, p, rank).unlink(missing_ok=True)
    held = plan.root / "eval" / "heldout_docs" / f"t{rank:05d}.txt"
    held.parent.mkdir(parents=True, exist_ok=True)
    held.with_suffix(".tmp").write_text("".join(f"{d}\n" for d in heldout), encoding="utf-8")
    held.with_suffix(".tmp").replace(held)
    counters = checkpoint.counters()
    counters.merge(input_counters)
    _finish(plan, "extract", rank, counters, checkpoint)


def _finish(plan: RunPlan, stage: str, rank: int, counters: Counters, checkpoint) -> None:
    write_json(counters_file(plan, stage, rank), counters.to_dict())
    checkpoint.remove()


# --- memory (reduce) -----------------------------------------------------------------------


def run_memory(plan: RunPlan, rank: int, world: int) -> None:
    engine = plan.config.engine
    counts = reduce_partition(plan.root, rank, plan.partitions, engine.max_statements_per_entity)
    if rank == 0:
        parts = sorted((plan.root / "eval" / "heldout_docs").glob("t*.txt"))
        ids = sorted({line for p in parts for line in p.read_text(encoding="utf-8").split()})
        target = heldout_docs_file(plan)
        target.with_suffix(".tmp").write_text("".join(f"{d}\n" for d in ids), encoding="utf-8")
        target.with_suffix(".tmp").replace(target)
    counters = Counters()
    for key, n in counts.items():
        counters.add("memory", key, n)
    write_json(counters_file(plan, "memory", rank), counters.to_dict())


def run_value_index(plan: RunPlan, rank: int, world: int) -> None:
    """Merge value/relation partition `rank` across the reduce tasks (memory_store)."""
    counters = Counters()
    for key, n in build_lookups(plan.root, rank).items():
        counters.add("value_index", key, n)
    write_json(counters_file(plan, "value_index", rank), counters.to_dict())


# --- partition stages ----------------------------------------------------------------------


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _partition_items(plan: RunPlan, stage: str, rank: int, world: int):
    if stage == "questions":
        source = entities_file(plan.root, rank)
        return (iter_jsonl(source) if source.exists() else iter(())), _count_lines(source)
    if stage == "has" and plan.trajectories:
        return _trajectories(plan.trajectories, rank, world), None
    source = stage_output(plan, "questions", rank)
    return (iter_jsonl(source) if source.exists() else iter(())), _count_lines(source)


def _trajectories(path: str, rank: int, world: int) -> Iterator[dict]:
    """User-supplied ReAct trajectories for HAS, this task's byte range only."""
    for byte_range in task_ranges([Path(path)], rank, world):
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
    items, total = _partition_items(plan, stage, rank, world)
    checkpoint = _run_batches(plan, stage, rank, world, items, total, "item", lambda _: 1)
    counters = checkpoint.counters()
    if stage == "questions":
        held = plan.root / "eval" / "heldout_questions" / f"p{rank:05d}.jsonl"
        write_jsonl(held, (q for q in checkpoint.records() if is_heldout_question(plan, q)))
        records = (q for q in checkpoint.records() if not is_heldout_question(plan, q))
        counters.add("questions", "heldout", sum(1 for _ in iter_jsonl(held)))
    else:
        records = checkpoint.records()
    write_jsonl(stage_output(plan, stage, rank), records)
    _finish(plan, stage, rank, counters, checkpoint)
