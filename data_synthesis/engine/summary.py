"""The run summary, the small run's single output files, and the "a stage produced nothing"
check.

The summary (OUT/final/stats.json, also printed) holds: input documents and tokens
(whitespace-separated words), statements, entities and how many combine >= 2 sources,
questions by style, training documents by kind and their tokens, every reject reason by stage
and the dedup/decontamination removals, and where the training documents are. It is built from
the tasks' counters (which survive resumes) and the dedup filter tasks' counts: the one
finalize task parses no document, question or entity file, whatever the run's size.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from data_synthesis.engine.dedup import KEPT, removal_counts
from data_synthesis.engine.io import TooLarge, join_files, write_json
from data_synthesis.stage_api import Counters


class StageEmpty(RuntimeError):
    """A stage produced nothing; the message names the stage and why."""


def stage_counters(root: Path, stage: str) -> Counters:
    total = Counters()
    for path in sorted((Path(root) / "counters" / stage).glob("t*.json")):
        total.merge(Counters.from_dict(json.loads(path.read_text(encoding="utf-8"))))
    return total


def _reasons(counters: Counters, stage: str) -> str:
    reasons = counters.rejects.get(stage) or {}
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:5]
    return ", ".join(f"{r}: {n}" for r, n in top) or "none recorded"


def check_stage(plan, stage: str) -> None:
    """Raise StageEmpty when `stage` produced nothing."""
    root = plan.root
    if stage == "extract":
        counters = stage_counters(root, "extract")
        docs = counters.counts.get("input", {}).get("documents", 0)
        if docs == 0:
            raise StageEmpty(
                f"stage extract: the input {', '.join(plan.input_paths)} holds no documents "
                "(empty files or only blank lines)"
            )
        if counters.counts.get("extract", {}).get("out", 0) == 0:
            raise StageEmpty(
                f"stage extract produced no statements from {docs} documents "
                f"(reject reasons: {_reasons(counters, 'extract')})"
            )
    elif stage == "memory":
        if stage_counters(root, "memory").counts.get("memory", {}).get("entities", 0) == 0:
            raise StageEmpty("stage memory produced no entity records")
    elif stage in ("questions", "planning", "reasoning", "has"):
        counters = stage_counters(root, stage)
        made = counters.counts.get(stage, {})
        if made.get("out", 0) == 0:
            raise StageEmpty(
                f"stage {stage} produced nothing from {made.get('in', 0)} inputs "
                f"(reject reasons: {_reasons(counters, stage)})"
            )
    elif stage == "dedup":
        if not any(p.stat().st_size for p in final_shards(root)):
            raise StageEmpty("stage dedup kept no documents")


def final_shards(root: Path, split: str | None = None) -> list[Path]:
    """The kept documents as the dedup filter tasks wrote them: final/<split>/<task>.jsonl.zst."""
    splits = [split] if split else list(KEPT)
    return [p for s in splits for p in sorted((Path(root) / "final" / s).glob("*.jsonl.zst"))]


def _kept_counts(root: Path) -> tuple[Counter, Counter]:
    """Documents and words by kind, summed over the filter tasks' counts."""
    documents, words = Counter(), Counter()
    for path in sorted((Path(root) / "final" / "counts").glob("*.json")):
        counts = json.loads(path.read_text(encoding="utf-8"))
        documents.update(counts["documents"])
        words.update(counts["tokens"])
    return documents, words


def _size(parts: list[Path]) -> int:
    """The parts' bytes on disk: no more than their text (zstd), so parts past a limit on disk
    need not be read to know their text passes it."""
    return sum(p.stat().st_size for p in parts)


def _joined(parts: list[Path], target: Path, limit: int) -> bool:
    """Join `parts` into the plain `target` if their text is at most `limit` bytes; else
    leave no `target`."""
    try:
        join_files(parts, target, limit)
        return True
    except TooLarge:
        target.unlink(missing_ok=True)
        return False


def _single_files(plan) -> dict[str, str]:
    """final/fas.jsonl and final/has.jsonl, each its shards decompressed and joined, when the
    two hold at most `engine.final_single_file_mb` of text (a small run's one plain file per
    kind); else, or with 0, the compressed shards are the output. Returns where each kind's
    documents are."""
    root, room = plan.root, plan.config.engine.final_single_file_mb << 20
    singles = {split: root / "final" / f"{split}.jsonl" for split in KEPT}
    joined = bool(room) and _size(final_shards(root)) <= room
    for split in KEPT:
        joined = joined and _joined(final_shards(root, split), singles[split], room)
        room -= singles[split].stat().st_size if joined else 0
    if joined:
        return {split: f"final/{split}.jsonl" for split in KEPT}
    for single in singles.values():
        single.unlink(missing_ok=True)
    return {split: f"final/{split}/*.jsonl.zst" for split in KEPT}


def _heldout_file(plan) -> str:
    """eval/heldout_questions.jsonl, the questions stage's per-partition files joined, while
    they hold at most `engine.final_single_file_mb` (one file for the evaluation); past that
    the partition files are the output (about 0.5 TB at 1 TB of input: not copied by this one
    task; `python -m data_synthesis.eval run --questions` takes the folder as one set, and
    `--limit` a sample). Returns where the questions are."""
    parts = sorted((plan.root / "eval" / "heldout_questions").glob("p*.jsonl"))
    joined = plan.root / "eval" / "heldout_questions.jsonl"
    limit = plan.config.engine.final_single_file_mb << 20
    if limit and _size(parts) <= limit and _joined(parts, joined, limit):
        return "eval/heldout_questions.jsonl"
    joined.unlink(missing_ok=True)
    return "eval/heldout_questions/"


def _optional(module: str, function: str, counts: dict):
    """A statistic a stage module computes from its counters (None when it has none)."""
    import importlib

    try:
        return getattr(importlib.import_module(module), function)(dict(counts))
    except (ImportError, AttributeError, KeyError, ZeroDivisionError, TypeError):
        return None


def build_summary(plan, kinds: Counter, tokens: Counter) -> dict:
    """The run's summary from counters alone: no document, question or entity file is read
    (at 1 TB they are billions of lines, and this is one task)."""
    root = plan.root
    counters = Counters()
    for stage in ("extract", "memory", "questions", "planning", "reasoning", "has"):
        counters.merge(stage_counters(root, stage))
    counts = counters.counts
    styles = {
        name.removeprefix("training "): n
        for name, n in counts.get("questions", {}).items()
        if name.startswith("training ")
    }
    heldout = counts.get("questions", {}).get("heldout", 0)
    rejects = {stage: dict(sorted(c.items())) for stage, c in sorted(counters.rejects.items())}
    rejects["dedup"] = removal_counts(root)
    return {
        "documents": counts.get("input", {}).get("documents", 0),
        "split_documents": counts.get("input", {}).get("split documents", 0),
        "input_tokens": counts.get("input", {}).get("tokens", 0),
        "statements": counts.get("memory", {}).get("statements", 0),
        "entities": counts.get("memory", {}).get("entities", 0),
        "entities_with_2plus_sources": counts.get("memory", {}).get("entities with 2+ sources", 0),
        "questions": dict(sorted(styles.items())),
        "heldout_questions": heldout,
        "heldout_documents": counts.get("input", {}).get("heldout documents", 0),
        "has_incorrect_share": _optional(
            "data_synthesis.has.synthesis", "incorrect_share", counts.get("has", {})
        ),
        "planning_grounding": _optional(
            "data_synthesis.environment.grounding", "agreement", counts.get("planning", {})
        ),
        "counts": {stage: dict(sorted(c.items())) for stage, c in sorted(counts.items())},
        "documents_by_kind": dict(sorted(kinds.items())),
        "output_tokens_by_kind": dict(sorted(tokens.items())),
        "rejects": rejects,
        "partitions": plan.partitions,
        "generator": plan.config.backend.type,
    }


def finalize(plan) -> dict:
    """Write the final files and the summary; raise StageEmpty naming the first empty stage."""
    for stage in ("extract", "memory", "questions", "planning", "reasoning", "has", "dedup"):
        check_stage(plan, stage)
    kinds, tokens = _kept_counts(plan.root)
    outputs = {**_single_files(plan), "heldout_questions": _heldout_file(plan)}
    summary = {**build_summary(plan, kinds, tokens), "outputs": outputs}
    write_json(plan.root / "final" / "stats.json", summary)
    print(json.dumps(summary, indent=2, sort_keys=True), file=sys.stdout, flush=True)
    return summary
