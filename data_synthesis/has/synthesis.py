"""HAS: at each step of a trajectory, several candidate decisions, and the one taken.

Input trajectories (built from FAS questions, or user-supplied ReAct trajectories in JSONL):

    {"id": ..., "question": ..., "steps": [{"thought": ..., "tool": "search",
     "arguments": {...}, "response": ...}, ..., {"thought": ..., "answer": ...}],
     "correct": true}

For each step, N alternative decisions (never executed) are shuffled with the original (seeded);
the text lists the options, states which one is taken, then shows only the taken step's real
response. The end says whether the final decision was correct. Plain next-token text, no masking.
Template alternatives (CPU default) vary the tool, the query and the timing of the answer; with an
LLM backend they come from the `has_alternatives_v1` prompt.
"""

from __future__ import annotations

import random

from data_synthesis import react


def trajectory_from_question(question: dict, statements: dict[str, dict]) -> dict:
    """A successful search-then-answer trajectory over the question's knowledge."""
    steps = []
    for record in question["records"]:
        statement = statements.get(record)
        if statement is None:
            continue
        steps.append(
            {
                "thought": f"I need the facts about {statement['entity']}.",
                "tool": "search",
                "arguments": {"query": [statement["entity"]]},
                "response": f"[1] {statement['entity']} - {statement['url']}\n{statement['text']}",
            }
        )
    steps.append(
        {"thought": "The gathered facts answer the question.", "answer": question["answer"]}
    )
    return {"id": question["id"], "question": question["question"], "steps": steps, "correct": True}


def template_alternatives(
    step: dict, trajectory: dict, n: int, rng: random.Random, tool_names: list[str]
) -> list[dict]:
    """N plausible alternative decisions for one step."""
    options = []
    query = " ".join(
        map(str, (step.get("arguments") or {}).get("query") or [trajectory["question"]])
    )
    if "search" in tool_names:
        options.append(
            {
                "thought": "A broader search may surface more sources.",
                "tool": "search",
                "arguments": {"query": [trajectory["question"]]},
            }
        )
    if "visit" in tool_names:
        options.append(
            {
                "thought": "An encyclopedia page on this topic should contain it.",
                "tool": "visit",
                "arguments": {
                    "url": [f"https://example.org/search?q={query}"],
                    "goal": trajectory["question"],
                },
            }
        )
    if "python" in tool_names:
        options.append(
            {
                "thought": "I could estimate the value by computation.",
                "tool": "python",
                "arguments": {"code": f"<code>print({query!r})</code>"},
            }
        )
    options.append({"thought": "I may already know enough to answer.", "answer": "I am not sure"})
    if "google_scholar" in tool_names:
        options.append(
            {
                "thought": "Scholarly sources might discuss this.",
                "tool": "google_scholar",
                "arguments": {"query": [query]},
            }
        )
    options = [o for o in options if o != {k: step.get(k) for k in o}]
    return rng.sample(options, min(n, len(options)))


def has_document(
    trajectory: dict, alternatives: list[list[dict]], rng: random.Random, generator: str
) -> dict:
    """The multi-decision text: per step, shuffled options, the choice, the real response."""
    parts = [f"Question: {trajectory['question']}"]
    chosen_positions = []
    for k, (step, others) in enumerate(zip(trajectory["steps"], alternatives), 1):
        options = others + [step]
        rng.shuffle(options)
        position = next(i for i, o in enumerate(options, 1) if o is step)
        chosen_positions.append(position)
        listing = "\n".join(f"Option {i}:\n{react.step_text(o)}" for i, o in enumerate(options, 1))
        parts.append(
            f"Step {k}. Candidate decisions:\n{listing}\nDecision: option {position} is taken."
        )
        if step.get("tool"):
            parts.append(react.tool_response(step.get("response", "")))
    verdict = "correct" if trajectory.get("correct", True) else "incorrect"
    parts.append(f"Outcome: the final decision was {verdict}.")
    return {
        "stage": "has",
        "style": "has",
        "trajectory_id": trajectory["id"],
        "chosen_positions": chosen_positions,
        "generator": generator,
        "source_ids": trajectory.get("records", []),
        "text": "\n\n".join(parts),
    }
