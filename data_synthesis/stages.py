"""The declarative table of synthesis stages, and which method runs each one.

    stage      tasks        reads                              writes
    extract    map tasks    input byte ranges                  memory/statements/pP/tT.jsonl
    memory     partitions   memory/statements/pP/*             memory/entities/pP.jsonl (+ indexes)
    questions  partitions   memory/entities/pP.jsonl           questions/pP.jsonl
    planning   partitions   questions/pP.jsonl                 docs/planning/pP.jsonl
    reasoning  partitions   questions/pP.jsonl                 docs/reasoning/pP.jsonl
    has        partitions   questions/pP.jsonl (or --trajectories byte ranges)  docs/has/pP.jsonl
    dedup      MinHash      docs/*/pP.jsonl                    final/parts/ (near-duplicates and
                                                               contaminated documents removed)
    finalize   one          final/parts/                       final/{fas,has}.jsonl, summary

The engine (data_synthesis/engine/) runs the table; a stage's method maps batches of records
(`StageMethod.run(items, ctx)`, data_synthesis/stage_api.py). `method_for` picks the stage
module's LLM class or its heuristic baseline; until a stage module exports its classes, thin
adapters below put the existing template functions behind the same interface.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Literal

from data_synthesis.stage_api import StageContext, StageMethod

TaskCount = Literal["map", "partitions", "dedup", "one"]


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
    StageSpec(
        "questions",
        "partitions",
        "memory/entities",
        "questions",
        ("data_synthesis.fas.questions", "LLMQuestions", "HeuristicQuestions"),
    ),
    StageSpec(
        "planning",
        "partitions",
        "questions",
        "docs/planning",
        ("data_synthesis.fas.planning", "LLMPlanner", "HeuristicPlanner"),
    ),
    StageSpec(
        "reasoning",
        "partitions",
        "questions",
        "docs/reasoning",
        ("data_synthesis.fas.reasoning", "LLMReasoner", "HeuristicReasoner"),
    ),
    StageSpec(
        "has",
        "partitions",
        "questions",
        "docs/has",
        ("data_synthesis.has.synthesis", "LLMHAS", "HeuristicHAS"),
    ),
    StageSpec("dedup", "dedup", "docs", "final/parts"),
    StageSpec("finalize", "one", "final/parts", "final"),
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
    module = importlib.import_module(module_name)
    if hasattr(module, wanted):
        return getattr(module, wanted)()
    adapter = _ADAPTERS.get((stage, llm_enabled))
    if adapter is None:
        raise NotImplementedError(
            f"stage {stage!r}: {module_name}.{wanted} is not available yet and there is no "
            "adapter for it"
        )
    return adapter()


# --- adapters over the template functions (until the stage modules export their classes) -----


def normalise_entity(name: str) -> str:
    """The entity key: case, a leading article and spacing folded."""
    from data_synthesis import memory

    if hasattr(memory, "entity_key"):
        return memory.entity_key(name)
    text = re.sub(r"\s+", " ", name.strip().lower())
    return re.sub(r"^(the|a|an) ", "", text)


class _HeuristicExtractorAdapter:
    """Rule-based statements (memory.extract_document) in the shared statement shape."""

    name = "extract"

    def run(self, items: list[dict], ctx: StageContext) -> list[dict]:
        from data_synthesis.fas.questions import RELATIONS, parse_number
        from data_synthesis.memory import extract_document, surface_name

        out = []
        for doc in items:
            extraction = extract_document(doc, [])
            name = surface_name(extraction["entity"])
            cursor, kept = 0, 0
            for st in extraction["statements"]:
                start = doc["text"].find(st["text"], cursor)
                span = [start, start + len(st["text"])] if start >= 0 else None
                cursor = span[1] if span else cursor
                for fact in st["facts"]:
                    kind = fact["kind"]
                    number = parse_number(fact["value"]) if kind in ("number", "year") else None
                    value = {
                        "type": {"year": "date"}.get(kind, kind),
                        "text": fact["value"],
                        "number": number,
                        "unit": (RELATIONS.get(fact["relation"]) or (None, None, None))[2],
                        "entity": normalise_entity(fact["value"]) if kind == "entity" else None,
                    }
                    out.append(
                        {
                            "id": f"{doc['id']}#{st['position']}/{fact['relation']}",
                            "entity": normalise_entity(name),
                            "entity_name": name,
                            "entity_type": extraction["type"],
                            "relation": fact["relation"],
                            "value": value,
                            "time": doc.get("date"),
                            "source": doc["id"],
                            "url": doc.get("url"),
                            "span": span,
                            "sentence": st["text"],
                            "extractor": "heuristic",
                        }
                    )
                    kept += 1
            if not kept:
                ctx.counters.reject("extract", "no statement found in document")
        return out


_KIND = {"date": "year"}


class _LegacyMemory:
    """The old QuestionMaker's view (name -> {type, facts}) over a MemoryView."""

    def __init__(self, memory):
        self.view = memory
        self.statements: dict[str, dict] = {}

    def _record(self, name: str) -> dict | None:
        return self.view.get(normalise_entity(name))

    def __contains__(self, name) -> bool:
        return bool(name) and self._record(name) is not None

    def __getitem__(self, name: str) -> dict:
        record = self._record(name)
        if record is None:
            raise KeyError(name)
        facts = []
        for s in record["statements"]:
            self.statements[s["id"]] = s
            value = s["value"]
            target = self.view.get(value["entity"]) if value.get("entity") else None
            fact = {
                "relation": s["relation"],
                "value": value["text"],
                "kind": _KIND.get(value["type"], value["type"]),
                "statement": s["id"],
            }
            if target is not None:
                fact["target"] = target["entity_name"]
            facts.append(fact)
        return {"type": record["type"], "facts": facts, "name": record["entity_name"]}


class _HeuristicQuestionsAdapter:
    """Template questions (fas.questions.QuestionMaker) over the partitioned memory."""

    name = "questions"

    def run(self, items: list[dict], ctx: StageContext) -> list[dict]:
        from data_synthesis.fas.questions import QuestionMaker, parse_number

        legacy = _LegacyMemory(ctx.memory)

        class Maker(QuestionMaker):
            def peers(self, anchor, relation):
                kind = legacy[anchor]["type"]
                found = []
                for row in ctx.memory.peers(relation, kind):
                    s = row["statement"]
                    if s["entity"] == normalise_entity(anchor):
                        continue
                    if parse_number(s["value"]["text"]) is None:
                        continue
                    legacy.statements[s["id"]] = s
                    found.append(
                        (s["entity_name"], {"value": s["value"]["text"], "statement": s["id"]})
                    )
                return found

        maker = Maker(legacy, ctx.config.questions.max_hops)
        out = []
        for record in items:
            anchor = record["entity_name"]
            rng = ctx.rng(record["entity"])
            styles = list(ctx.config.questions.styles)
            rng.shuffle(styles)
            made = 0
            for style in styles:
                if made == ctx.config.questions.per_entity:
                    break
                if style not in ("factual", "multi_hop", "numeric", "comparison", "obfuscated"):
                    continue
                question = maker.make(style, anchor, rng)
                if question is None:
                    ctx.counters.reject("questions", f"{style}: memory lacks what it needs")
                    continue
                supporting = [legacy.statements[r] for r in question["records"]]
                out.append(
                    {
                        "id": f"{record['entity']}/{style}",
                        "anchor": record["entity"],
                        "generator": "heuristic",
                        "supporting": supporting,
                        "source_docs": sorted({str(s["source"]) for s in supporting}),
                        **question,
                    }
                )
                ctx.counters.add("questions", style)
                made += 1
        return out


def _legacy_statements(question: dict) -> dict[str, dict]:
    return {
        s["id"]: {
            "text": s["sentence"],
            "entity": s["entity_name"],
            "url": s.get("url"),
            "mentions": [],
        }
        for s in question.get("supporting", [])
    }


def _tool_dicts(ctx: StageContext) -> list[dict]:
    if ctx.tools is not None and hasattr(ctx.tools, "as_dicts"):
        return ctx.tools.as_dicts()
    return ctx.config.tools


class _HeuristicPlannerAdapter:
    name = "planning"

    def run(self, items: list[dict], ctx: StageContext) -> list[dict]:
        from data_synthesis.fas import planning

        tools = _tool_dicts(ctx)
        names = [t["name"] for t in tools]
        out = []
        for question in items:
            statements = _legacy_statements(question)
            plans = planning.template_plans(
                question, statements, ctx.config.plans_per_question, ctx.rng(question["id"])
            )
            for plan in plans:
                reason = planning.reaches_knowledge(plan, question, statements, names)
                if reason:
                    ctx.counters.reject("planning", reason)
                    continue
                document = planning.plan_document(question, plan, tools, "heuristic")
                out.append(
                    {
                        "id": f"{question['id']}/plan/{plan['style']}",
                        "kind": "fas_planning",
                        **document,
                    }
                )
        return out


class _HeuristicReasonerAdapter:
    name = "reasoning"

    def run(self, items: list[dict], ctx: StageContext) -> list[dict]:
        from data_synthesis.fas import reasoning

        out = []
        for question in items:
            chain = reasoning.template_chain(question, _legacy_statements(question))
            reason = reasoning.reject_reason(chain, question, ctx.config.max_reasoning_chars)
            if reason:
                ctx.counters.reject("reasoning", reason)
                continue
            document = reasoning.reasoning_document(question, chain, "heuristic")
            out.append({"id": f"{question['id']}/reasoning", "kind": "fas_reasoning", **document})
        return out


class _HeuristicHASAdapter:
    name = "has"

    def run(self, items: list[dict], ctx: StageContext) -> list[dict]:
        from data_synthesis.has.synthesis import (
            has_document,
            template_alternatives,
            trajectory_from_question,
        )

        names = [t["name"] for t in _tool_dicts(ctx)]
        out = []
        for item in items:
            trajectory = (
                item
                if "steps" in item
                else trajectory_from_question(item, _legacy_statements(item))
            )
            rng = ctx.rng(trajectory["id"])
            alternatives = [
                template_alternatives(step, trajectory, ctx.config.has_alternatives, rng, names)
                for step in trajectory["steps"]
            ]
            document = has_document(trajectory, alternatives, rng, "heuristic")
            out.append({"id": f"{trajectory['id']}/has", "kind": "has", **document})
        return out


_ADAPTERS = {
    ("extract", False): _HeuristicExtractorAdapter,
    ("questions", False): _HeuristicQuestionsAdapter,
    ("planning", False): _HeuristicPlannerAdapter,
    ("reasoning", False): _HeuristicReasonerAdapter,
    ("has", False): _HeuristicHASAdapter,
}
