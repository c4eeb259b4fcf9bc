"""Judging a final answer against the gold: normalised matching first (data_synthesis.answers:
number formats, units, dates, case, articles), then - when it does not match and a judge
backend is given - the LLM judge of the reasoning stage (prompt `answer_judge_v1`, JSON
{"equivalent": bool} under constrained decoding where the backend has it), which sees the
question, the gold and the prediction.

The record keeps both signals: {"match": bool, "llm": bool | None, "correct": bool,
"judge_error": str | None}; `correct` is match OR llm. A judge reply that cannot be read is
counted as not correct, with the reason, never raised.
"""

from __future__ import annotations

from data_synthesis.answers import answers_match
from data_synthesis.fas.reasoning import JUDGE_SCHEMA
from data_synthesis.llm.json_task import load_prompt, require, run_json_task
from data_synthesis.stage_api import Counters


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
    prompt = load_prompt("answer_judge_v1")
    prompts = [
        prompt.messages(
            question=items[i]["question"], gold=items[i]["gold"], answer=items[i]["prediction"]
        )
        for i in ask
    ]
    counters = Counters()
    try:
        replies = run_json_task(
            judge,
            prompts,
            JUDGE_SCHEMA,
            lambda obj: require(obj, equivalent=bool),
            seed=seed,
            retries=1,
            counters=counters,
            stage="judge",
        )
    except Exception as error:  # noqa: BLE001 - a judge outage leaves the matching verdicts
        for i in ask:
            verdicts[i]["judge_error"] = f"judge call failed: {str(error)[:200]}"
        return verdicts
    for i, reply in zip(ask, replies):
        if reply is None:
            verdicts[i]["judge_error"] = "judge reply unusable"
            continue
        verdicts[i]["llm"] = reply["equivalent"]
        verdicts[i]["correct"] = reply["equivalent"]
    return verdicts
