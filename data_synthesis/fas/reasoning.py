"""FAS reasoning actions: two calls as in the paper, kept only when the final answer is right.

1. A1 - from the question ALONE (no knowledge in the prompt): split it into sub-questions and
   answer them from the model's own knowledge (it may be wrong or unsure).
2. A2 - given the question, A1 and the knowledge the question was built from: check A1 step by
   step, correct it, and state the final answer.
A2's final answer is judged against the gold: first by typed matching (data_synthesis.answers:
units, number formats, case, articles), then - for the LLM method, when that fails on a text
answer sharing a content word with the gold - by an LLM judge (`answer_judge_v1`) that accepts a
correct paraphrase. Numbers and dates are decided by the typed comparison alone. A wrong answer, an empty or
over-long chain is rejected with its reason counted.

`HeuristicReasoning` (the baseline) writes A1 as the sub-questions with no knowledge ("not known
without looking it up") and A2 by applying the statements (and the arithmetic for numeric,
temporal and comparison questions).
"""

from __future__ import annotations

from data_synthesis import react
from data_synthesis.answers import answers_match, judge_may_decide
from data_synthesis.fas.questions import sub_questions
from data_synthesis.llm.json_task import STRING, load_prompt, object_schema, require, run_json_task

STAGE = "reasoning"


def reasoning_document(question: dict, a1: str, a2: str, answer: str, generator: str) -> dict:
    knowledge = "\n".join(f"- {s['sentence']}" for s in question["supporting"])
    text = (
        f"Question: {question['question']}\n\n"
        + react.think(f"Step 1 - sub-questions, answered from memory:\n{a1}")
        + f"\n\nKnowledge:\n{knowledge}\n\n"
        + react.think(f"Step 2 - checking step 1 against the knowledge:\n{a2}")
        + "\n"
        + react.answer(answer)
    )
    return {
        "id": f"{question['id']}/reasoning",
        "kind": "fas_reasoning",
        "style": question["style"],
        "question_id": question["id"],
        "a1": a1,
        "a2": a2,
        "answer": answer,
        "gold": question["answer"],
        "source_docs": question["source_docs"],
        "generator": generator,
        "text": text,
    }


def _too_long(a1: str, a2: str, ctx) -> bool:
    return len(a1) + len(a2) > ctx.config.max_reasoning_chars


# --- heuristic baseline -----------------------------------------------------------------------


def heuristic_chain(question: dict, memory) -> tuple[str, str, str]:
    steps = sub_questions(question, memory)
    a1 = "\n".join(f"{i}. {s} - not known without looking it up." for i, s in enumerate(steps, 1))
    supporting = question["supporting"]
    lines = [f"{i}. {s['sentence']}" for i, s in enumerate(supporting, 1)]
    style = question["style"]
    answer = supporting[-1]["value"]["text"]  # factual, multi-hop, obfuscated: the last look-up
    if style in ("numeric", "temporal"):
        a, b = (s["value"]["number"] for s in supporting)
        diff = abs(a - b)
        lines.append(f"|{a:g} - {b:g}| = {diff:g}")
        unit = "years" if style == "temporal" else supporting[0]["value"].get("unit")
        answer = f"{diff:,.0f}" if diff == int(diff) else f"{diff:,.2f}"
        answer += f" {unit}" if unit else ""
    if style == "comparison":
        pick = max if question.get("operation") == "largest" else min
        best = pick(supporting, key=lambda s: s["value"]["number"])
        values = ", ".join(f"{s['entity_name']}: {s['value']['text']}" for s in supporting)
        answer = best["entity_name"]
        lines.append(f"Comparing {values}: the {question.get('operation')} is {answer}.")
    lines.append(f"So the answer is {answer}.")
    return a1, "\n".join(lines), answer


class HeuristicReasoning:
    """Heuristic baseline: A1 without knowledge, A2 from the statements; typed answer check."""

    name = STAGE

    def run(self, items: list[dict], ctx) -> list[dict]:
        out = []
        for question in items:
            a1, a2, answer = heuristic_chain(question, ctx.memory)
            reason = _reject(a1, a2, answer, question, ctx)
            if reason:
                ctx.counters.reject(STAGE, reason)
                continue
            ctx.counters.add(STAGE, f"kept {question['style']}")
            out.append(reasoning_document(question, a1, a2, answer, "heuristic"))
        return out


def _reject(a1: str, a2: str, answer: str, question: dict, ctx) -> str | None:
    if not answer.strip():
        return "no final answer"
    if _too_long(a1, a2, ctx):
        return "chain too long"
    if not answers_match(answer, question["answer"]):
        return "wrong final answer"
    return None


# --- the LLM method ---------------------------------------------------------------------------

A1_SCHEMA = object_schema(
    {
        "sub_questions": {"type": "array", "items": STRING, "maxItems": 6},
        "a1": STRING,
        "answer": STRING,
    }
)
A2_SCHEMA = object_schema({"a2": STRING, "answer": STRING})
JUDGE_SCHEMA = object_schema({"equivalent": {"type": "boolean"}, "reason": STRING})


def _check_a1(obj):
    require(obj, a1=str, answer=str)


def _check_a2(obj):
    require(obj, a2=str, answer=str)


def _check_judge(obj):
    require(obj, equivalent=bool)


class LLMReasoning:
    """The method: A1 (question only), A2 (with the knowledge), typed match + LLM judge."""

    name = STAGE
    prompts = ("reasoning_a1_v1", "reasoning_a2_v1", "answer_judge_v1")

    def run(self, items: list[dict], ctx) -> list[dict]:
        a1_prompt, a2_prompt, judge_prompt = (load_prompt(p) for p in self.prompts)
        task = dict(retries=ctx.config.backend.max_retries, counters=ctx.counters, stage=STAGE)
        first = run_json_task(
            ctx.llm,
            [a1_prompt.messages(question=q["question"]) for q in items],
            A1_SCHEMA,
            _check_a1,
            seed=ctx.seed,
            **task,
        )
        pending = [(q, a1) for q, a1 in zip(items, first) if a1 is not None]
        second = run_json_task(
            ctx.llm,
            [
                a2_prompt.messages(
                    question=q["question"],
                    a1=_a1_text(a1),
                    knowledge="\n".join(f"- {s['sentence']}" for s in q["supporting"]),
                )
                for q, a1 in pending
            ],
            A2_SCHEMA,
            _check_a2,
            seed=ctx.seed + 1,
            **task,
        )
        chains = []
        for (question, a1), a2 in zip(pending, second):
            if a2 is None:
                continue
            a1_text, answer = _a1_text(a1), a2["answer"].strip()
            if _too_long(a1_text, a2["a2"], ctx):
                ctx.counters.reject(STAGE, "chain too long")
                continue
            chains.append((question, a1_text, a2["a2"].strip(), answer))
        return self._judged(chains, judge_prompt, task, ctx)

    def _judged(self, chains, judge_prompt, task, ctx) -> list[dict]:
        unmatched, wrong = [], set()
        for chain in chains:
            if answers_match(chain[3], chain[0]["answer"]):
                continue
            if judge_may_decide(chain[3], chain[0]["answer"]):
                unmatched.append(chain)
            else:
                wrong.add(id(chain))
        verdicts = run_json_task(
            ctx.llm,
            [
                judge_prompt.messages(question=q["question"], gold=q["answer"], answer=ans)
                for q, _, _, ans in unmatched
            ],
            JUDGE_SCHEMA,
            _check_judge,
            seed=ctx.seed + 2,
            **task,
        )
        judged = {id(c): v for c, v in zip(unmatched, verdicts)}
        out = []
        for chain in chains:
            question, a1, a2, answer = chain
            if id(chain) in wrong:
                ctx.counters.reject(STAGE, "wrong final answer")
                continue
            if id(chain) in judged:
                verdict = judged[id(chain)]
                if verdict is None:
                    continue
                if not verdict["equivalent"]:
                    ctx.counters.reject(STAGE, "wrong final answer")
                    continue
                ctx.counters.add(STAGE, "paraphrase accepted by the judge")
            ctx.counters.add(STAGE, f"kept {question['style']}")
            out.append(reasoning_document(question, a1, a2, answer, "llm"))
        return out


def _a1_text(a1: dict) -> str:
    subs = "\n".join(f"- {s}" for s in a1.get("sub_questions") or [])
    return (
        f"Sub-questions:\n{subs}\n" if subs else ""
    ) + f"{a1['a1'].strip()}\nAnswer: {a1['answer']}"
