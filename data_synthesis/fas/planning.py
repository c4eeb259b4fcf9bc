"""FAS planning actions: problem analysis plus the FIRST action, K distinct plans per question.

No tool is executed. A plan is kept when its first tool calls would reach the knowledge the
question was built from (judged against the question's source statements): its search queries
name the entities (or, for obfuscated questions, the clues) of those statements, or it visits
their source pages. Template plans (CPU default) come in several styles; with an LLM backend the
plans are generated with the `plan_v1` prompt and parsed strictly.
"""

from __future__ import annotations

import random

from data_synthesis import react

STYLES = ("decompose", "direct_search", "visit_sources", "guess")


def template_plans(
    question: dict, statements: dict[str, dict], k: int, rng: random.Random
) -> list[dict]:
    """K plans of distinct styles (a "guess" answers without acquiring knowledge)."""
    styles = rng.sample(STYLES, min(k, len(STYLES)))
    return [_template_plan(style, question, statements) for style in styles]


def _template_plan(style: str, question: dict, statements: dict[str, dict]) -> dict:
    needed = [statements[r] for r in question["records"] if r in statements]
    subjects = list(dict.fromkeys(s["entity"] for s in needed))
    if style == "decompose":
        steps = [f"({i}) find what the sources say about {e}" for i, e in enumerate(subjects, 1)]
        analysis = (
            f"The question is of the {question['style'].replace('_', '-')} kind. "
            f"I break it into sub-questions: {'; '.join(steps)}. "
            "I start by searching for each of them."
        )
        return _plan(
            style, analysis, "search", {"query": [s["text"].split(".")[0] for s in needed]}
        )
    if style == "direct_search":
        analysis = (
            f"The answer depends on facts about {', '.join(subjects)}. A search should find them."
        )
        return _plan(style, analysis, "search", {"query": [f"{e}" for e in subjects]})
    if style == "visit_sources":
        urls = list(dict.fromkeys(s["url"] for s in needed if s.get("url")))
        analysis = "Pages that state these facts are known; visiting them answers the question."
        return _plan(style, analysis, "visit", {"url": urls, "goal": question["question"]})
    analysis = "I think I remember the answer and can reply directly without checking."
    return {"style": style, "thought": analysis, "tool": None, "answer": "unknown"}


def _plan(style, analysis, tool, arguments) -> dict:
    return {"style": style, "thought": analysis, "tool": tool, "arguments": arguments}


def reaches_knowledge(
    plan: dict, question: dict, statements: dict[str, dict], tool_names: list[str]
) -> str | None:
    """None when the plan's first action would acquire the needed knowledge, else the reason."""
    if not plan.get("tool"):
        return "answers without acquiring the knowledge"
    if plan["tool"] not in tool_names:
        return f"invalid tool {plan['tool']!r}"
    needed = [statements[r] for r in question["records"] if r in statements]
    arguments = plan.get("arguments") or {}
    if plan["tool"] == "visit":
        urls = set(arguments.get("url") or [])
        missing = [s for s in needed if s.get("url") not in urls]
    else:
        text = " ".join(map(str, arguments.get("query") or [])).lower()
        missing = [
            s
            for s in needed
            if s["entity"].lower() not in text and not any(m.lower() in text for m in s["mentions"])
        ]
    return "would not reach the needed statements" if missing else None


def plan_document(question: dict, plan: dict, tools: list[dict], generator: str) -> dict:
    """A training document: the question, the analysis and the first action."""
    text = (
        f"Available tools:\n{react.tools_block(tools)}\n\nQuestion: {question['question']}\n\n"
        + react.step_text(plan)
    )
    return {
        "stage": "planning",
        "style": question["style"],
        "plan_style": plan["style"],
        "question_id": question["id"],
        "source_ids": question["records"],
        "generator": generator,
        "text": text,
    }
