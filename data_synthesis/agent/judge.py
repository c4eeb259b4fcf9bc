"""Judging a final answer against the gold: normalised matching first (data_synthesis.answers:
number formats, units, dates, case, articles), then - when it does not match and a judge
backend is given - an LLM judge that sees the question, the gold and the prediction.

The record keeps both signals: {"match": bool, "llm": bool | None, "correct": bool,
"judge_error": str | None}; `correct` is match OR llm. A judge reply that cannot be read is
counted as not correct, with the reason, never raised.
"""

from __future__ import annotations

import re

from data_synthesis.answers import answers_match

JUDGE_PROMPT = """Judge whether a predicted answer to a question is correct.
Question: {question}
Gold answer: {gold}
Predicted answer: {prediction}
The prediction is correct if it states the gold answer (paraphrases, other units or formats of the
same value are fine); it is incorrect if it is a different value, only partly right, or a refusal.
Reply with one word: CORRECT or INCORRECT."""

_VERDICT = re.compile(r"\b(INCORRECT|CORRECT)\b", re.IGNORECASE)


def judge_prompt(question: str, gold: str, prediction: str) -> str:
    return JUDGE_PROMPT.format(question=question, gold=gold, prediction=prediction)


def read_verdict(reply: str) -> bool | None:
    """True/False from a judge reply, None when it says neither."""
    found = _VERDICT.search(reply or "")
    return None if not found else found.group(1).upper() == "CORRECT"


def judge_answers(items: list[dict], judge=None, seed: int = 0) -> list[dict]:
    """One verdict per item ({"question", "gold", "prediction"}); the LLM judge is asked only
    about predictions that the normalised matching did not accept, in one batch."""
    verdicts = []
    for item in items:
        prediction = item.get("prediction")
        match = bool(prediction) and answers_match(str(prediction), str(item["gold"]))
        verdicts.append({"match": match, "llm": None, "correct": match, "judge_error": None})
    ask = [i for i, v in enumerate(verdicts) if not v["match"] and items[i].get("prediction")]
    if judge is None or not ask:
        return verdicts
    prompts = [
        [
            {
                "role": "user",
                "content": judge_prompt(
                    items[i]["question"], items[i]["gold"], items[i]["prediction"]
                ),
            }
        ]
        for i in ask
    ]
    try:
        replies = judge.generate(prompts, seed=seed)
    except Exception as error:  # noqa: BLE001 - a judge outage leaves the matching verdicts
        for i in ask:
            verdicts[i]["judge_error"] = f"judge call failed: {str(error)[:200]}"
        return verdicts
    for i, reply in zip(ask, replies):
        verdict = read_verdict(reply)
        if verdict is None:
            verdicts[i]["judge_error"] = "judge reply without CORRECT/INCORRECT"
        verdicts[i]["llm"] = verdict
        verdicts[i]["correct"] = bool(verdict)
    return verdicts
