"""FAS planning actions: problem analysis plus the FIRST tool call, K sampled plans per question.

No tool is executed here. Each plan is validated before it is kept, with the reason counted:
- the call must be a valid call of a tool in the configured list (the same ToolRegistry that
  wrote the prompt's tool list: data_synthesis/environment/registry.py);
- the call must not carry the gold answer, a supporting sentence, or (obfuscated / multi-hop)
  the entity the question hides - a plan that already knows the answer acquires nothing;
- the judge must find that the first action makes progress toward the needed knowledge without
  assuming it: `LLMPlanning` asks the model (`plan_judge_v1`, given the question, the knowledge
  the question was built from and the plan), `HeuristicPlanning` checks that the call targets
  the first look-up (its anchor terms or clues) of the question.
The plan record keeps its `call`, so a grounded check (executing the call in the environment)
can be added after this stage.
"""

from __future__ import annotations

import json
import re

from data_synthesis import react
from data_synthesis.answers import answer_in_text, name_in_text, sentence_in_text, tokens
from data_synthesis.fas.questions import sub_questions
from data_synthesis.llm.json_task import STRING, load_prompt, object_schema, require, run_json_task
from data_synthesis.memory import QUERY_STOP

STAGE = "planning"
STYLE_NAMES = {
    "factual": "a factual",
    "numeric": "a numeric",
    "temporal": "a temporal",
    "comparison": "a comparison",
    "multi_hop": "a multi-hop",
    "obfuscated": "an obfuscated",
}


def call_text(call: dict) -> str:
    return json.dumps(call.get("arguments", {}), ensure_ascii=False)


def leak_reason(plan: dict, question: dict) -> str | None:
    """Why a plan's call or analysis assumes the knowledge it should acquire, or None."""
    text = call_text(plan["call"])
    if question["style"] != "comparison" and answer_in_text(question["answer"], text):
        return "call carries the gold answer"
    if any(
        sentence_in_text(s["sentence"], text, given=question["question"])
        for s in question["supporting"]
    ):
        return "call carries a supporting sentence"
    hidden = _hidden_names(question)
    if any(name_in_text(name, text) for name in hidden):
        return "call names the hidden entity"
    if question["style"] != "comparison" and answer_in_text(question["answer"], plan["analysis"]):
        return "analysis states the gold answer"
    return None


def _hidden_names(question: dict) -> list[str]:
    if question["style"] == "obfuscated":
        return [question["supporting"][0]["entity_name"]]
    if question["style"] == "multi_hop" and question.get("hidden"):
        return [question["hidden"]]
    return []


def validate(plan: dict, question: dict, tools) -> str | None:
    """The first reason to reject a plan before judging, or None."""
    invalid = tools.validate_call(plan["call"])
    if invalid:
        return invalid.split(":")[0]  # "unknown tool", "invalid arguments", "malformed call"
    return leak_reason(plan, question)


def tool_signatures(tools) -> str:
    """One line naming the tools and their arguments ("Tools: search(query), visit(url, goal)"):
    the training text shows which tools exist without the full schemas, which would make every
    planning document a near-duplicate of the others under MinHash deduplication."""
    calls = [f"{s.name}({', '.join(s.parameters.get('properties', {}))})" for s in tools.specs()]
    return "Tools: " + ", ".join(calls)


def plan_document(question: dict, plan: dict, tools, generator: str, index: int) -> dict:
    """A training document: the tools, the question, the analysis and the first action."""
    call = plan["call"]
    text = (
        f"{tool_signatures(tools)}\n\nQuestion: {question['question']}\n\n"
        + react.think(plan["analysis"])
        + "\n"
        + react.tool_call(call["name"], call["arguments"])
    )
    return {
        "id": f"{question['id']}/plan{index}",
        "kind": "fas_planning",
        "style": question["style"],
        "plan_style": plan.get("style", "llm"),
        "question_id": question["id"],
        "question": question["question"],
        "analysis": plan["analysis"],
        "call": call,
        "judge": plan.get("judge"),
        "grounding": plan.get("grounding"),
        "source_docs": question["source_docs"],
        "generator": generator,
        "text": text,
    }


def _keep(question, candidates, ctx, generator) -> list[dict]:
    out = []
    for index, plan in enumerate(candidates):
        out.append(plan_document(question, plan, ctx.tools, generator, index))
        ctx.counters.add(STAGE, f"kept {question['style']}")
    return out


def ground(plan: dict, question: dict, judge_kept: bool, ctx) -> None:
    """The grounded check beside the judge (when the run has an environment): execute the
    call, record whether its results hold a supporting statement, count judge/env agreement."""
    if ctx.env is None:
        return
    from data_synthesis.environment.grounding import ground_plan, grounding_key

    plan["grounding"] = ground_plan(plan["call"], question, ctx.env)
    ctx.counters.add(STAGE, grounding_key(judge_kept, plan["grounding"]["grounded"]))


# --- heuristic baseline -----------------------------------------------------------------------


def _terms(text: str) -> list[str]:
    return [
        t
        for t in tokens(text)
        if t not in QUERY_STOP and not t.isdigit() or re.fullmatch(r"\d{3,4}", t)
    ]


def _query_tool(tools) -> str | None:
    for spec in tools.specs():
        props = spec.parameters.get("properties", {})
        if "query" in props:
            return spec.name
    return None


def _search_call(tools, name: str, queries: list[str]) -> dict:
    spec = tools.get(name)
    kind = spec.parameters["properties"]["query"].get("type")
    return {"name": name, "arguments": {"query": queries if kind == "array" else queries[0]}}


def heuristic_plans(question: dict, tools, memory, k: int, rng) -> list[dict]:
    """Up to K plans of different styles: the first look-up as key terms, one query per needed
    look-up, or the question itself."""
    tool = _query_tool(tools)
    if tool is None:
        return []
    steps = sub_questions(question, memory)
    analysis = (
        f"This is {STYLE_NAMES[question['style']]} question. I need, in order: "
        + " Then: ".join(steps)
        + " I start with the first look-up."
    )
    lookups = [s for s in steps if s.endswith("?")]
    first = lookups[0] if lookups else question["question"]
    styles = {
        "key_terms": [" ".join(_terms(first))],
        "per_lookup": [" ".join(_terms(s)) for s in lookups if "which entity is" not in s.lower()]
        or [" ".join(_terms(first))],
        "question": [question["question"]],
    }
    names = list(styles)
    rng.shuffle(names)
    return [
        {
            "style": n,
            "analysis": analysis,
            "call": _search_call(tools, tool, [q for q in styles[n] if q]),
        }
        for n in names[:k]
        if any(styles[n])
    ]


def heuristic_judge(plan: dict, question: dict) -> str | None:
    """Progress check of the baseline: the call must target the first look-up - the anchor's
    name (visible styles) or the clue values (obfuscated) or the first hop (multi-hop)."""
    text = set(tokens(call_text(plan["call"])))
    first = question["supporting"][0]
    if question["style"] == "obfuscated":
        needed = set(_terms(" ".join(c["value"]["text"] for c in question["clues"])))
    else:
        needed = set(_terms(first["entity_name"]))
    if not needed or len(needed & text) < max(1, len(needed) // 2):
        return "judge: no progress toward the needed knowledge"
    return None


class HeuristicPlanning:
    """Heuristic baseline: plans from the question's decomposition; rule-based judge."""

    name = STAGE

    def run(self, items: list[dict], ctx) -> list[dict]:
        out = []
        for question in items:
            rng = ctx.rng(question["id"])
            plans = heuristic_plans(
                question, ctx.tools, ctx.memory, ctx.config.plans_per_question, rng
            )
            if not plans:
                ctx.counters.reject(STAGE, "no search tool in the tool list")
            kept = []
            for plan in plans:
                reason = validate(plan, question, ctx.tools)
                if reason:
                    ctx.counters.reject(STAGE, reason)
                    continue
                reason = heuristic_judge(plan, question)
                ground(plan, question, reason is None, ctx)
                if reason:
                    ctx.counters.reject(STAGE, reason)
                else:
                    plan["judge"] = {"verdict": "progress", "by": "heuristic"}
                    kept.append(plan)
            out += _keep(question, kept, ctx, "heuristic")
        return out


# --- the LLM method ---------------------------------------------------------------------------

VERDICTS = ["progress", "no_progress", "assumes_answer", "wrong_tool"]
JUDGE_SCHEMA = object_schema({"verdict": {"enum": VERDICTS}, "reason": STRING})


def plan_schema(tools) -> dict:
    return object_schema({"analysis": STRING, "tool_call": tools.json_schema_for_call()})


def _check_plan(obj: dict) -> None:
    require(obj, analysis=str, tool_call=dict)


def _check_verdict(obj: dict) -> None:
    require(obj, verdict=str)
    if obj["verdict"] not in VERDICTS:
        from data_synthesis.llm.json_task import SchemaError

        raise SchemaError("schema: unknown verdict")


class LLMPlanning:
    """The method: K sampled plans per question, validated, then judged by the LLM."""

    name = STAGE
    prompt, judge_prompt = "plan_v2", "plan_judge_v1"

    def run(self, items: list[dict], ctx) -> list[dict]:
        k = ctx.config.plans_per_question
        template = load_prompt(self.prompt)
        tools = ctx.tools.prompt_block()
        prompts = [
            template.messages(tools=tools, question=q["question"]) for q in items for _ in range(k)
        ]
        parsed = run_json_task(
            ctx.llm,
            prompts,
            plan_schema(ctx.tools),
            _check_plan,
            seed=ctx.seed,
            retries=ctx.config.backend.max_retries,
            counters=ctx.counters,
            stage=STAGE,
        )
        candidates = []
        for index, obj in enumerate(parsed):
            if obj is None:
                continue
            question = items[index // k]
            plan = {
                "style": f"sample{index % k}",
                "analysis": obj["analysis"].strip(),
                "call": obj["tool_call"],
            }
            reason = validate(plan, question, ctx.tools)
            if reason:
                ctx.counters.reject(STAGE, reason)
            else:
                candidates.append((question, plan))
        return self._judged(candidates, ctx)

    def _judged(self, candidates, ctx) -> list[dict]:
        template = load_prompt(self.judge_prompt)
        prompts = [
            template.messages(
                question=q["question"],
                knowledge="\n".join(f"- {s['sentence']}" for s in q["supporting"]),
                analysis=plan["analysis"],
                call=json.dumps(plan["call"], ensure_ascii=False),
            )
            for q, plan in candidates
        ]
        verdicts = run_json_task(
            ctx.llm,
            prompts,
            JUDGE_SCHEMA,
            _check_verdict,
            seed=ctx.seed + 1,
            retries=ctx.config.backend.max_retries,
            counters=ctx.counters,
            stage=STAGE,
        )
        kept: dict[str, list] = {}
        order = []
        for (question, plan), verdict in zip(candidates, verdicts):
            if verdict is None:
                continue
            ground(plan, question, verdict["verdict"] == "progress", ctx)
            if verdict["verdict"] != "progress":
                ctx.counters.reject(STAGE, f"judge: {verdict['verdict']}")
                continue
            plan["judge"] = {
                "verdict": "progress",
                "reason": verdict.get("reason", ""),
                "by": "llm",
            }
            if question["id"] not in kept:
                order.append(question)
            kept.setdefault(question["id"], []).append(plan)
        out = []
        for question in order:
            out += _keep(question, kept[question["id"]], ctx, "llm")
        return out
