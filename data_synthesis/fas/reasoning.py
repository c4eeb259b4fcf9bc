"""FAS reasoning actions: step-by-step reasoning from a question and its knowledge to an answer.

Two steps, as in the paper: split the question into sub-questions and answer them (A1), then
check A1 against the knowledge and state the final answer (A2). Chains are kept only when the
final answer matches the gold answer (normalised match, or an LLM judge when configured) and
their length is sane - rejection sampling, with reject reasons counted. Template chains (CPU
default) are written from the memory statements; the LLM path uses the `reasoning_v1` prompt.
"""

from __future__ import annotations

import re

from data_synthesis import react
from data_synthesis.fas.questions import format_number, parse_number

_ARTICLES = re.compile(r"\b(the|a|an|about)\b")


def normalise(answer: str) -> str:
    """Lower case, no articles or punctuation; numbers in one canonical form."""
    number = parse_number(answer.strip().removeprefix("about ").strip())
    if number is not None:
        return format_number(number)
    text = _ARTICLES.sub(" ", answer.lower())
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def answers_match(predicted: str, gold: str) -> bool:
    return bool(predicted) and normalise(predicted) == normalise(gold)


def template_chain(question: dict, statements: dict[str, dict]) -> dict:
    """Sub-questions answered from the question's statements, then the checked final answer."""
    needed = [statements[r] for r in question["records"] if r in statements]
    first = [
        f"Sub-question {i}: what do we know about {s['entity']}? Answer: {s['text']}"
        for i, s in enumerate(needed, 1)
    ]
    check = ["Checking each step against the knowledge: every fact above is stated in the sources."]
    if question["style"] == "numeric":
        a, b = question["operands"]
        op = "+" if "sum" in question["question"] else "-"
        value = a + b if op == "+" else abs(a - b)
        check.append(
            f"Computation: {format_number(a)} {op} {format_number(b)} = "
            f"{format_number(value)}" + (" (absolute difference)" if op == "-" else "")
        )
    return {"a1": "\n".join(first), "a2": "\n".join(check), "answer": question["answer"]}


def reject_reason(chain: dict, question: dict, max_chars: int) -> str | None:
    """Why a chain is rejected, or None to keep it."""
    if not chain.get("answer"):
        return "no final answer"
    if len(chain["a1"]) + len(chain["a2"]) > max_chars:
        return "too long"
    if not answers_match(str(chain["answer"]), question["answer"]):
        return "wrong final answer"
    return None


def reasoning_document(question: dict, chain: dict, generator: str) -> dict:
    text = (
        f"Question: {question['question']}\n\n"
        + react.think(
            f"Step 1 - sub-questions and initial answers:\n{chain['a1']}\n\n"
            f"Step 2 - checking and correcting:\n{chain['a2']}"
        )
        + "\n"
        + react.answer(str(chain["answer"]))
    )
    return {
        "stage": "reasoning",
        "style": question["style"],
        "question_id": question["id"],
        "source_ids": question["records"],
        "generator": generator,
        "text": text,
    }
