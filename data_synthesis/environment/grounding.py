"""Grounded planning check: execute a plan's first action and see whether its results contain
the question's supporting statements - a signal beside the LLM judge (the paper has only the
judge), and how often the two agree.

    ground_plan(call, question, env) -> {"executed", "error", "supporting_found",
                                         "supporting_total", "grounded", "response_chars"}
    grounding_key(judge_kept, grounded) -> "grounding:judge_yes_env_yes" ... (a counter key)
    agreement(counts) -> {"n", "judge_yes_env_yes", ..., "agreement", "cohen_kappa"}

A supporting statement counts as found when its sentence (or, failing that, its value next to
its entity) appears in the tool response (data_synthesis.answers matching: case, punctuation,
number formats ignored), leaving out the response's echo of the query: a search response quotes
its query ("A search for '...' found", "No results found for '...'"), and a query that copies
a supporting sentence would otherwise find it there.
"""

from __future__ import annotations

from data_synthesis.answers import answer_in_text, name_in_text, sentence_in_text
from data_synthesis.environment.executor import Scope

KEYS = ("judge_yes_env_yes", "judge_yes_env_no", "judge_no_env_yes", "judge_no_env_no")


def statement_found(statement: dict, text: str) -> bool:
    """Whether a supporting statement is in a tool response."""
    sentence = statement.get("sentence") or statement.get("text") or ""
    if sentence and sentence_in_text(sentence, text):
        return True
    value = (statement.get("value") or {}).get("text") if isinstance(statement, dict) else None
    name = statement.get("entity_name") or statement.get("entity") or ""
    return bool(value and name and answer_in_text(value, text) and name_in_text(name, text))


def ground_plan(call: dict | None, question: dict, env) -> dict:
    """Execute `call` ({"name", "arguments"}; None for a plan that answers directly) for the
    question (its searches scoped to it: Environment.execute) and record which of the
    question's supporting statements its results contain."""
    supporting = question.get("supporting") or []
    record = {"executed": False, "error": None, "supporting_found": 0}
    record.update(supporting_total=len(supporting), grounded=False, response_chars=0)
    if not call:
        record["error"] = "no tool call"
        return record
    result = env.execute(call, Scope.of(question))
    record.update(executed=True, error=result.error, response_chars=len(result.text))
    text = result.text
    queries = (call.get("arguments") or {}).get("query") or []
    for query in [queries] if isinstance(queries, str) else queries:
        text = text.replace(f"'{query}'", "''")  # a search response echoes its queries
    found = sum(statement_found(s, text) for s in supporting)
    record.update(supporting_found=found, grounded=found > 0)
    return record


def grounding_key(judge_kept: bool, grounded: bool) -> str:
    """The counter key of one judged, executed plan (ctx.counters.add("planning", key))."""
    return f"grounding:judge_{'yes' if judge_kept else 'no'}_env_{'yes' if grounded else 'no'}"


def agreement(counts: dict) -> dict:
    """Agreement of the LLM judge with the environment check, from the four counter keys
    (with or without the "grounding:" prefix): raw agreement and Cohen's kappa."""
    cells = {k: int(counts.get(f"grounding:{k}", counts.get(k, 0))) for k in KEYS}
    n = sum(cells.values())
    out = {"n": n, **cells, "agreement": None, "cohen_kappa": None}
    if not n:
        return out
    observed = (cells["judge_yes_env_yes"] + cells["judge_no_env_no"]) / n
    judge_yes = (cells["judge_yes_env_yes"] + cells["judge_yes_env_no"]) / n
    env_yes = (cells["judge_yes_env_yes"] + cells["judge_no_env_yes"]) / n
    expected = judge_yes * env_yes + (1 - judge_yes) * (1 - env_yes)
    out["agreement"] = round(observed, 4)
    out["cohen_kappa"] = round((observed - expected) / (1 - expected), 4) if expected < 1 else None
    return out
