"""The interface between the synthesis engine and the method of each stage.

The engine (data_synthesis/engine/) reads a task's input records, calls
`method.run(batch, ctx)` on batches, and writes, partitions, checkpoints and counts; a stage's
method (memory.py, fas/*, has/*) only maps a batch of input records to output records. Keeping
the two apart lets the same method run on one laptop or as a 64-node SLURM array, and lets a
method batch all its LLM calls of a batch into one backend call (vLLM stays busy).

Rules for a method:
- `run(items, ctx)` returns the kept output records; rejections are counted in `ctx.counters`
  with a reason (`ctx.counters.reject(stage, reason)`), never raised.
- It is deterministic given the items, the config and `ctx.seed`: draw randomness only from
  `ctx.rng(item_id)` (an RNG seeded by seed, stage and item), never from global state, so a
  rerun after a kill, or a run split into another number of tasks, gives identical output.
- It never reads the whole memory: `ctx.memory` answers per-entity look-ups, loading only the
  partitions it needs.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from data_synthesis.config import PipelineConfig


def item_rng(seed: int, stage: str, item_id: str) -> random.Random:
    """An RNG that depends only on the seed, the stage and the item."""
    digest = hashlib.sha256(f"{seed}:{stage}:{item_id}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


@dataclass
class Counters:
    """Counts of one task: `kept`/other keys per stage and reject reasons per stage.

    The engine writes each task's counters next to its output and sums them in the run summary,
    so a resumed task's counts survive (they are saved with each checkpointed batch)."""

    counts: dict[str, Counter] = field(default_factory=dict)
    rejects: dict[str, Counter] = field(default_factory=dict)

    def add(self, stage: str, key: str, n: int = 1) -> None:
        self.counts.setdefault(stage, Counter())[key] += n

    def reject(self, stage: str, reason: str, n: int = 1) -> None:
        self.rejects.setdefault(stage, Counter())[reason] += n

    def merge(self, other: Counters) -> None:
        for stage, counter in other.counts.items():
            self.counts.setdefault(stage, Counter()).update(counter)
        for stage, counter in other.rejects.items():
            self.rejects.setdefault(stage, Counter()).update(counter)

    def to_dict(self) -> dict:
        return {
            "counts": {s: dict(sorted(c.items())) for s, c in sorted(self.counts.items())},
            "rejects": {s: dict(sorted(c.items())) for s, c in sorted(self.rejects.items())},
        }

    @classmethod
    def from_dict(cls, raw: dict) -> Counters:
        return cls(
            counts={s: Counter(c) for s, c in raw.get("counts", {}).items()},
            rejects={s: Counter(c) for s, c in raw.get("rejects", {}).items()},
        )


@runtime_checkable
class MemoryView(Protocol):
    """Read access to the entity memory without loading it whole.

    Entity records have the shape built by the memory reduce step:
    {"entity": key, "entity_name": str, "type": str|None, "statements": [statement...],
     "sources": [doc ids], "links": [entity keys]}."""

    def get(self, entity: str) -> dict | None:
        """The record of a normalised entity key (loads that entity's partition on first use)."""

    def links(self, entity: str) -> list[str]:
        """Entities linked to this one (statement values naming them, co-mentions), from the
        link index: no scan of the memory."""

    def find(self, relation: str, value: dict) -> list[str]:
        """Entities with a statement of this relation and value (sorted), from the value index."""

    def count(self, relation: str, value: dict) -> int:
        """len(find(relation, value)), without reading the list."""

    def has(self, entity: str, relation: str, value: dict) -> bool:
        """entity in find(relation, value), without reading the list."""

    def peers(self, relation: str, entity_type: str | None, limit: int = 50) -> list[dict]:
        """Statements of other entities with a numeric value for `relation` (and the same
        type, when given), from the relation index: [{"entity", "statement"}...], sorted by
        entity key, at most `limit`."""


@dataclass
class StageContext:
    """What a stage method may use while it runs one batch."""

    config: PipelineConfig
    llm: Any | None = None  # data_synthesis.llm backend; None -> heuristic baseline
    tools: Any | None = None  # data_synthesis.environment.registry.ToolRegistry
    env: Any | None = None  # executes tool calls (search/visit/python/custom)
    memory: MemoryView | None = None
    counters: Counters = field(default_factory=Counters)
    seed: int = 0
    stage: str = ""

    def rng(self, item_id: str) -> random.Random:
        """The item's own RNG for this stage (see the module docstring)."""
        return item_rng(self.seed, self.stage, str(item_id))


@runtime_checkable
class StageMethod(Protocol):
    """The method of one stage: a batch of input records -> kept output records."""

    name: str  # "memory", "questions", "planning", "reasoning", "has"

    def run(self, items: list[dict], ctx: StageContext) -> list[dict]:
        """Map a batch; batch all LLM calls of the batch together (one backend call with many
        prompts). Rejections go to ctx.counters with a reason."""
