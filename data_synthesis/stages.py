"""The synthesis stages over one output directory, each sharded and resumable.

    OUT/memory/extract-*.jsonl     per-document statements and facts        (stage: memory)
    OUT/memory/memory.jsonl        entity records, built once all shards exist
    OUT/questions/questions-*.jsonl                                          (stage: questions)
    OUT/planning/planning-*.jsonl  kept plans as training documents          (stage: planning)
    OUT/reasoning/reasoning-*.jsonl kept reasoning chains                    (stage: reasoning)
    OUT/has/has-*.jsonl            multi-decision texts                      (stage: has)
    OUT/final/{fas,has}.jsonl + stats.json    deduplicated, decontaminated, counted

Rejected items are kept in the stage files as `{"rejected": reason}` records, so reject reasons
are counted from the files (and survive a resume).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from data_synthesis import react
from data_synthesis.config import PipelineConfig
from data_synthesis.fas import planning, reasoning
from data_synthesis.fas.questions import QuestionMaker
from data_synthesis.filters import decontaminate, deduplicate
from data_synthesis.has.synthesis import (
    has_document,
    template_alternatives,
    trajectory_from_question,
)
from data_synthesis.llm.json_task import load_prompt, require, run_json_task
from data_synthesis.memory import build_memory, extract_document
from data_synthesis.shards import read_jsonl, read_stage, run_shard, write_jsonl

STAGES = ("memory", "questions", "planning", "reasoning", "has", "finalize")


class Stage:
    """Shared state of a run: config, output directory, shard, backend."""

    def __init__(self, config: PipelineConfig, out: Path, shard: int, num_shards: int, backend):
        self.config, self.out, self.shard, self.num_shards = config, Path(out), shard, num_shards
        self.backend = backend
        self.generator = backend.name if backend else "template-v1 (rule-based, CPU default)"

    def run(self, stage: str, items, process, directory: str) -> Path:
        batch = self.config.backend.batch_size if self.backend else 1
        return run_shard(
            stage,
            items,
            process,
            self.out / directory,
            self.shard,
            self.num_shards,
            self.config.seed,
            batch_size=batch,
        )

    def records(self, directory: str, stage: str) -> list[dict]:
        return read_stage(self.out / directory, stage, self.num_shards)

    def memory(self) -> dict[str, dict]:
        return {r["entity"]: r for r in read_jsonl(self.out / "memory" / "memory.jsonl")}

    def statements(self) -> dict[str, dict]:
        return {
            s["id"]: {**s, "entity": r["entity"]}
            for r in self.memory().values()
            for s in r["statements"]
        }

    def questions(self) -> list[dict]:
        return [q for q in self.records("questions", "questions") if "rejected" not in q]


# --- memory -----------------------------------------------------------------------------------


def run_memory(st: Stage, documents: list[dict]) -> Path:
    _check_documents(documents)
    known = [d.get("title") or d["id"] for d in documents]

    def process(docs, rngs):
        if st.backend is None:
            return [[extract_document(doc, known)] for doc in docs]
        return _llm_extract(st, docs, known)

    st.run("extract", documents, process, "memory")
    memory_file = st.out / "memory" / "memory.jsonl"
    try:
        extractions = st.records("memory", "extract")
    except FileNotFoundError:
        return memory_file  # other shards still running; the last one to finish builds it
    if not memory_file.exists():
        write_jsonl(memory_file, build_memory(extractions))
    return memory_file


def _check_documents(documents: list[dict]) -> None:
    ids = set()
    for number, doc in enumerate(documents, 1):
        if not isinstance(doc.get("text"), str) or "id" not in doc:
            raise ValueError(f"input document {number}: needs a string 'text' and an 'id'")
        if doc["id"] in ids:
            raise ValueError(f"input document {number}: duplicate id {doc['id']!r}")
        ids.add(doc["id"])


def _llm_extract(st: Stage, docs: list[dict], known: list[str]) -> list[list[dict]]:
    """LLM extraction: the rule-based sentence split and mentions, facts from the model."""
    base = [extract_document(doc, known) for doc in docs]
    prompt = load_prompt("memory_v1")
    prompts = [prompt.format(entity=b["entity"], text=doc["text"]) for b, doc in zip(base, docs)]

    def check(obj):
        require(obj, facts=list)
        for fact in obj["facts"]:
            require(fact, relation=str, value=str, sentence=int)

    rejects: Counter = Counter()
    parsed = run_json_task(
        st.backend, prompts, check, st.config.seed, st.config.backend.max_retries, rejects
    )
    out = []
    for extraction, obj in zip(base, parsed):
        if obj is None:  # the rule-based facts stay
            extraction["extractor"] = "rules-v1 (fallback: llm reply unusable)"
        else:
            extraction["extractor"] = st.generator
            for statement in extraction["statements"]:
                statement["facts"] = []
            for fact in obj["facts"]:
                if 0 <= fact["sentence"] < len(extraction["statements"]):
                    extraction["statements"][fact["sentence"]]["facts"].append(
                        {"relation": fact["relation"], "value": fact["value"], "kind": "text"}
                    )
        out.append([extraction])
    return out


# --- FAS --------------------------------------------------------------------------------------


def run_questions(st: Stage) -> Path:
    memory = st.memory()
    maker = QuestionMaker(memory, st.config.questions.max_hops)
    anchors = [{"id": entity} for entity in sorted(memory)]

    def process(items, rngs):
        batches = []
        for item, rng in zip(items, rngs):
            made = []
            styles = list(st.config.questions.styles)
            rng.shuffle(styles)
            for style in styles:
                if len(made) == st.config.questions.per_entity:
                    break
                question = maker.make(style, item["id"], rng)
                if question is not None:
                    made.append(
                        {
                            "stage": "questions",
                            "id": f"{item['id']}/{style}",
                            "anchor": item["id"],
                            "generator": st.generator,
                            **question,
                        }
                    )
            batches.append(made)
        if st.backend is not None:
            _llm_rephrase(st, [q for made in batches for q in made])
        return batches

    return st.run("questions", anchors, process, "questions")


def _llm_rephrase(st: Stage, questions: list[dict]) -> None:
    prompt = load_prompt("question_v1")
    rejects: Counter = Counter()
    parsed = run_json_task(
        st.backend,
        [prompt.format(question=q["question"], answer=q["answer"]) for q in questions],
        lambda obj: require(obj, question=str),
        st.config.seed,
        st.config.backend.max_retries,
        rejects,
    )
    for question, obj in zip(questions, parsed):
        if obj is not None:
            question["template_question"], question["question"] = (
                question["question"],
                obj["question"],
            )


def run_planning(st: Stage) -> Path:
    statements, tools = st.statements(), st.config.tools

    def process(questions, rngs):
        k = st.config.plans_per_question
        if st.backend is None:
            plans = [
                planning.template_plans(q, statements, k, rng) for q, rng in zip(questions, rngs)
            ]
        else:
            plans = _llm_plans(st, questions, k)
        outputs = []
        for question, candidates in zip(questions, plans):
            records = []
            for plan in candidates:
                if plan is None:
                    records.append({"rejected": "malformed output"})
                    continue
                reason = planning.reaches_knowledge(
                    plan, question, statements, st.config.tool_names
                )
                records.append(
                    {"rejected": reason}
                    if reason
                    else planning.plan_document(question, plan, tools, st.generator)
                )
            outputs.append(records)
        return outputs

    return st.run("planning", st.questions(), process, "planning")


def _llm_plans(st: Stage, questions: list[dict], k: int) -> list[list[dict | None]]:
    prompt = load_prompt("plan_v1")
    tools = react.tools_block(st.config.tools)

    def check(obj):
        require(obj, analysis=str, tool_call=dict)
        require(obj["tool_call"], name=str, arguments=dict)

    plans: list[list] = [[] for _ in questions]
    for attempt in range(k):  # K samples per question = K distinct plans
        rejects: Counter = Counter()
        parsed = run_json_task(
            st.backend,
            [prompt.format(tools=tools, question=q["question"]) for q in questions],
            check,
            st.config.seed + 7919 * attempt,
            st.config.backend.max_retries,
            rejects,
        )
        for index, obj in enumerate(parsed):
            plans[index].append(
                None
                if obj is None
                else {
                    "style": f"llm-{attempt}",
                    "thought": obj["analysis"],
                    "tool": obj["tool_call"]["name"],
                    "arguments": obj["tool_call"]["arguments"],
                }
            )
    return plans


def run_reasoning(st: Stage) -> Path:
    statements = st.statements()

    def process(questions, rngs):
        if st.backend is None:
            chains = [reasoning.template_chain(q, statements) for q in questions]
        else:
            chains = _llm_chains(st, questions, statements)
        outputs = []
        for question, chain in zip(questions, chains):
            reason = (
                "malformed output"
                if chain is None
                else reasoning.reject_reason(chain, question, st.config.max_reasoning_chars)
            )
            outputs.append(
                [
                    {"rejected": reason}
                    if reason
                    else reasoning.reasoning_document(question, chain, st.generator)
                ]
            )
        return outputs

    return st.run("reasoning", st.questions(), process, "reasoning")


def _llm_chains(st: Stage, questions: list[dict], statements: dict) -> list[dict | None]:
    prompt = load_prompt("reasoning_v1")
    prompts = [
        prompt.format(
            question=q["question"],
            knowledge="\n".join(
                f"- {statements[r]['text']}" for r in q["records"] if r in statements
            ),
        )
        for q in questions
    ]
    rejects: Counter = Counter()
    parsed = run_json_task(
        st.backend,
        prompts,
        lambda o: require(o, a1=str, a2=str, answer=str),
        st.config.seed,
        st.config.backend.max_retries,
        rejects,
    )
    return parsed


# --- HAS --------------------------------------------------------------------------------------


def run_has(st: Stage, trajectories_file: str | None = None) -> Path:
    if trajectories_file:
        trajectories = read_jsonl(trajectories_file)
        for number, t in enumerate(trajectories, 1):
            if not isinstance(t.get("steps"), list) or not t.get("question") or "id" not in t:
                raise ValueError(
                    f"{trajectories_file}:{number}: a trajectory needs id, question, steps"
                )
    else:
        statements = st.statements()
        trajectories = [trajectory_from_question(q, statements) for q in st.questions()]
    n = st.config.has_alternatives

    def process(items, rngs):
        outputs = []
        for trajectory, rng in zip(items, rngs):
            if st.backend is None:
                alternatives = [
                    template_alternatives(step, trajectory, n, rng, st.config.tool_names)
                    for step in trajectory["steps"]
                ]
            else:
                alternatives = _llm_alternatives(st, trajectory, n)
            outputs.append([has_document(trajectory, alternatives, rng, st.generator)])
        return outputs

    return st.run("has", trajectories, process, "has")


def _llm_alternatives(st: Stage, trajectory: dict, n: int) -> list[list[dict]]:
    prompt = load_prompt("has_alternatives_v1")
    tools = react.tools_block(st.config.tools)
    prompts, context = [], []
    for step in trajectory["steps"]:
        prompts.append(
            prompt.format(
                tools=tools,
                question=trajectory["question"],
                n=n,
                history="\n".join(react.step_text(s) for s in context),
            )
        )
        context.append(step)

    def check(obj):
        require(obj, alternatives=list)
        for option in obj["alternatives"]:
            require(option, thought=str)
            if "answer" not in option:
                require(option, tool=str, arguments=dict)

    rejects: Counter = Counter()
    parsed = run_json_task(
        st.backend, prompts, check, st.config.seed, st.config.backend.max_retries, rejects
    )
    return [(obj or {"alternatives": []})["alternatives"][:n] for obj in parsed]


# --- final ------------------------------------------------------------------------------------


def run_finalize(st: Stage) -> dict:
    """Final training documents, deduplicated and decontaminated, and the stats report."""
    stats: dict = {"documents": {}, "rejected": {}, "removed": {}, "styles": {}, "mean_chars": {}}
    eval_texts = []
    for path in st.config.filters.eval_sets:
        eval_texts += [r.get("text") or r.get("question", "") for r in read_jsonl(path)]
    outputs = {"fas": ("planning", "reasoning"), "has": ("has",)}
    for name, stages in outputs.items():
        documents, removed = [], Counter()
        for stage in stages:
            records = st.records(stage, stage)
            stats["rejected"][stage] = dict(
                Counter(r["rejected"] for r in records if "rejected" in r)
            )
            documents += [r for r in records if "rejected" not in r]
        documents = deduplicate(documents, st.config.filters.near_duplicate_threshold, removed)
        documents = decontaminate(documents, eval_texts, st.config.filters.ngram, removed)
        write_jsonl(st.out / "final" / f"{name}.jsonl", documents)
        stats["removed"][name] = dict(removed)
        for document in documents:
            key = f"{document['stage']}/{document['style']}"
            stats["styles"][key] = stats["styles"].get(key, 0) + 1
        stats["documents"][name] = len(documents)
        stats["mean_chars"][name] = round(
            sum(len(d["text"]) for d in documents) / max(len(documents), 1)
        )
    stats["questions"] = dict(Counter(q["style"] for q in st.questions()))
    stats["memory"] = {"entities": len(st.memory()), "statements": len(st.statements())}
    (st.out / "final" / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    return stats
