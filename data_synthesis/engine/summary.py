"""The run summary, the final output files, and the "a stage produced nothing" check.

The summary (OUT/final/stats.json, also printed) holds: input documents and tokens
(whitespace-separated words), statements, entities and how many combine >= 2 sources,
questions by style, training documents by kind and their tokens, and every reject reason by
stage (from the tasks' counters, which survive resumes) plus the dedup/decontamination removals.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

from data_synthesis.engine.dedup import removal_counts
from data_synthesis.engine.io import dumps, iter_jsonl, write_json
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
                f"stage extract: the input {', '.join(plan.inputs)} holds no documents "
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
        parts = sorted((root / "final" / "parts").glob("*.jsonl"))
        if not any(p.stat().st_size for p in parts):
            raise StageEmpty("stage dedup kept no documents")


def _write_split(root: Path) -> tuple[Counter, Counter]:
    """final/parts/* -> final/fas.jsonl and final/has.jsonl (streamed, atomic)."""
    final = root / "final"
    kinds, tokens = Counter(), Counter()
    tmp = {
        name: open(final / f"{name}.jsonl.tmp", "w", encoding="utf-8") for name in ("fas", "has")
    }
    try:
        for part in sorted((final / "parts").glob("*.jsonl")):
            for document in iter_jsonl(part):
                kind = document.get("kind", "unknown")
                kinds[kind] += 1
                tokens[kind] += len(document["text"].split())
                tmp["has" if kind == "has" else "fas"].write(dumps(document) + "\n")
    finally:
        for handle in tmp.values():
            handle.close()
    for name in tmp:
        os.replace(final / f"{name}.jsonl.tmp", final / f"{name}.jsonl")
    return kinds, tokens


def _concat(parts: list[Path], target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(target.with_name(target.name + ".tmp"), "w", encoding="utf-8") as handle:
        for part in parts:
            for record in iter_jsonl(part):
                handle.write(dumps(record) + "\n")
                count += 1
    os.replace(target.with_name(target.name + ".tmp"), target)
    return count


def _optional(module: str, function: str, counts: dict):
    """A statistic a stage module computes from its counters (None when it has none)."""
    import importlib

    try:
        return getattr(importlib.import_module(module), function)(dict(counts))
    except (ImportError, AttributeError, KeyError, ZeroDivisionError, TypeError):
        return None


def build_summary(plan, kinds: Counter, tokens: Counter) -> dict:
    root = plan.root
    counters = Counters()
    for stage in ("extract", "memory", "questions", "planning", "reasoning", "has"):
        counters.merge(stage_counters(root, stage))
    styles: Counter = Counter()
    for path in sorted((root / "questions").glob("p*.jsonl")):
        styles.update(q.get("style", "unknown") for q in iter_jsonl(path))
    multi_source = 0
    for path in sorted((root / "memory" / "entities").glob("p*.jsonl")):
        multi_source += sum(1 for r in iter_jsonl(path) if len(r.get("sources", [])) >= 2)
    counts = counters.counts
    heldout = _concat(
        sorted((root / "eval" / "heldout_questions").glob("p*.jsonl")),
        root / "eval" / "heldout_questions.jsonl",
    )
    rejects = {stage: dict(sorted(c.items())) for stage, c in sorted(counters.rejects.items())}
    rejects["dedup"] = removal_counts(root)
    return {
        "documents": counts.get("input", {}).get("documents", 0),
        "split_documents": counts.get("input", {}).get("split documents", 0),
        "input_tokens": counts.get("input", {}).get("tokens", 0),
        "statements": counts.get("memory", {}).get("statements", 0),
        "entities": counts.get("memory", {}).get("entities", 0),
        "entities_with_2plus_sources": multi_source,
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
    kinds, tokens = _write_split(plan.root)
    summary = build_summary(plan, kinds, tokens)
    write_json(plan.root / "final" / "stats.json", summary)
    print(json.dumps(summary, indent=2, sort_keys=True), file=sys.stdout, flush=True)
    return summary
