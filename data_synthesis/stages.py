"""The declarative table of synthesis stages, and which method runs each one.

    stage      tasks        reads                              writes
    extract    map tasks    input byte ranges                  memory/statements/tT.jsonl.zst (one
                                                               file per task, grouped by partition)
    memory     partitions   partition P's range of each tT     memory/entities/pP.jsonl.zst, and
                                                               memory/index_rows/pP.jsonl
    value_index index       ranges 2I, 2I + 1 of each          memory/lookup/ (a line per
                partitions  memory/index_rows/pP.jsonl         key)
    questions  partition tasks  memory/entities/pP.jsonl.zst   questions/pP.jsonl.zst
    planning   partition tasks  questions/pP.jsonl.zst         docs/planning/pP.jsonl.zst
    reasoning  partition tasks  questions/pP.jsonl.zst         docs/reasoning/pP.jsonl.zst
    has        partition tasks  questions/pP.jsonl.zst (or --trajectories byte ranges)
                                                               docs/has/pP.jsonl.zst
    dedup      MinHash      docs/*/pP.jsonl.zst                final/{fas,has}/tT.jsonl.zst (near-
                                                               duplicates and contaminated
                                                               documents removed), their counts
    finalize   one          counters, final/counts/            final/stats.json (the summary);
                                                               final/{fas,has}.jsonl (plain)
                                                               when small

A partition task (`engine.partition_tasks`, default one per partition) covers every N-th
partition with one LLM engine and one tool environment.

Held-out questions (a source document in the evaluation split, data_synthesis/eval/heldout.py)
leave the questions stage for OUT/eval/ and never become training documents.

The engine (data_synthesis/engine/) runs the table; a stage's method maps batches of records
(`StageMethod.run(items, ctx)`, data_synthesis/stage_api.py). `method_for` picks the stage
module's LLM class or its heuristic baseline: each stage is one module holding both.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from data_synthesis.stage_api import StageMethod

TaskCount = Literal["map", "partitions", "index_partitions", "partition_tasks", "dedup", "one"]


@dataclass(frozen=True)
class StageSpec:
    name: str
    tasks: TaskCount
    reads: str
    writes: str
    method: tuple[str, str, str] | None = None  # (module, LLM class, heuristic class)


STAGE_TABLE: tuple[StageSpec, ...] = (
    StageSpec(
        "extract",
        "map",
        "input",
        "memory/statements",
        ("data_synthesis.memory", "LLMExtractor", "HeuristicExtractor"),
    ),
    StageSpec("memory", "partitions", "memory/statements", "memory/entities"),
    StageSpec("value_index", "index_partitions", "memory/index_rows", "memory/lookup"),
    StageSpec(
        "questions",
        "partition_tasks",
        "memory/entities",
        "questions",
        ("data_synthesis.fas.questions", "LLMQuestions", "HeuristicQuestions"),
    ),
    StageSpec(
        "planning",
        "partition_tasks",
        "questions",
        "docs/planning",
        ("data_synthesis.fas.planning", "LLMPlanning", "HeuristicPlanning"),
    ),
    StageSpec(
        "reasoning",
        "partition_tasks",
        "questions",
        "docs/reasoning",
        ("data_synthesis.fas.reasoning", "LLMReasoning", "HeuristicReasoning"),
    ),
    StageSpec(
        "has",
        "partition_tasks",
        "questions",
        "docs/has",
        ("data_synthesis.has.synthesis", "LLMHAS", "HeuristicHAS"),
    ),
    StageSpec("dedup", "dedup", "docs", "final/fas, final/has, final/counts"),
    StageSpec("finalize", "one", "counters, final/counts", "final/stats.json"),
)
STAGES = tuple(spec.name for spec in STAGE_TABLE)
SPEC = {spec.name: spec for spec in STAGE_TABLE}


def method_for(stage: str, llm_enabled: bool) -> StageMethod:
    """The stage's LLM method or heuristic baseline (the module's class when it exports one,
    else the adapter here)."""
    spec = SPEC[stage]
    if spec.method is None:
        raise ValueError(f"stage {stage!r} has no method: the engine runs it")
    module_name, llm_class, heuristic_class = spec.method
    wanted = llm_class if llm_enabled else heuristic_class
    return getattr(importlib.import_module(module_name), wanted)()
