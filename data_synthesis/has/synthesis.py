"""HAS - higher-order action synthesis from real agent rollouts.

Input: questions (rolled out here by the agent over the real environment) or trajectories already
rolled out (data_synthesis/agent/rollouts.py records). For each step k of a trajectory:
- N alternative decisions are generated with the full context of the step (question, earlier
  steps and their real tool responses): by the LLM (`LLMHAS`, one batched call for all steps of a
  batch, in the same <think>/<tool_call>/<answer> form, validated against the tool registry), or
  by the scripted agent's other candidates (`HeuristicHAS`: other real search results to visit,
  other queries, answers read from other sentences - written by the same functions as the taken
  step, so wording does not give the original away);
- the alternatives are shuffled with the original step (seeded by the item), the text says
  "I will choose option k", and only the original's REAL tool response follows;
- at the end, "Correct" or "Incorrect" from the judged outcome of the whole trajectory.
A step is never shown with one option: an alternatives call that yields no valid alternative is
retried (`max_retries`), then that step is written as a plain ReAct step (no decision list) and
counted (`step without alternatives`). Counters: trajectories, outcome_correct,
outcome_incorrect (their share is the reported Incorrect share), steps, alternatives, rejects by
reason.
"""

from __future__ import annotations

from data_synthesis import react
from data_synthesis.agent.heuristic import HeuristicPolicy, candidate_steps
from data_synthesis.agent.loop import AgentConfig, LLMPolicy
from data_synthesis.agent.rollouts import rollout

ALTERNATIVES_PROMPT = """You help build training data for a research agent. Below is the agent's
task, its tools and its steps so far with the real tool responses. Propose {n} DIFFERENT possible
next steps the agent could take now (other tools, other queries, other pages, or an answer),
each plausible, each in the same form as the agent's steps:
<think>reasoning</think> then EITHER <tool_call>{{"name": ..., "arguments": {{...}}}}</tool_call>
OR <answer>...</answer>. Separate the options with a line "### Option".

Tools:
{tools}

Question: {question}
{history}

{n} possible next steps:
### Option
"""


def trajectory_steps(trajectory: dict) -> list[dict]:
    """The decisions of a rollout, without malformed replies (they were not decisions)."""
    return [s for s in trajectory["steps"] if s.get("tool") != "invalid"]


def _same(a: dict, b: dict) -> bool:
    if a.get("tool") or b.get("tool"):
        return react.call_of(a) == react.call_of(b)
    return str(a.get("answer", "")).strip().lower() == str(b.get("answer", "")).strip().lower()


def heuristic_alternatives(question: str, steps: list[dict], k: int, n: int, rng) -> list[dict]:
    """Up to n other candidates of the scripted agent at step k (full context: steps[:k])."""
    original = steps[k]
    pool = [c for c in candidate_steps(question, steps[:k]) if not _same(c, original)]
    return rng.sample(pool, min(n, len(pool)))


def parse_alternatives(reply: str, original: dict, registry, n: int) -> tuple[list[dict], dict]:
    """Valid, distinct alternatives from one LLM reply, and the count of each reject reason."""
    kept, rejects = [], {}
    for block in reply.split("### Option"):
        if not block.strip():
            continue
        try:
            step = react.parse_step(block)
        except react.StepParseError as error:
            reason = f"alternative unparsable: {error}"
            rejects[reason] = rejects.get(reason, 0) + 1
            continue
        if step.get("tool"):
            problem = registry.validate_call(react.call_of(step))
            if problem:
                reason = "alternative " + problem.split(":")[0]
                rejects[reason] = rejects.get(reason, 0) + 1
                continue
        if _same(step, original) or any(_same(step, k) for k in kept):
            rejects["alternative duplicate"] = rejects.get("alternative duplicate", 0) + 1
            continue
        kept.append(step)
    return kept[:n], rejects


def has_document(trajectory: dict, alternatives: list[list[dict]], rng, generator: str) -> dict:
    """The HAS text: per step, the shuffled options, the choice, the original's real response;
    at the end the judged outcome."""
    steps = trajectory_steps(trajectory)
    parts = [f"Question: {trajectory['question']}"]
    chosen = []
    for number, (step, others) in enumerate(zip(steps, alternatives), 1):
        if not others:  # never a one-option decision: a plain step
            parts.append(f"Step {number}.\n{react.step_text(step)}")
            chosen.append(None)
        else:
            options = [*others, step]
            rng.shuffle(options)
            position = next(i for i, o in enumerate(options, 1) if o is step)
            chosen.append(position)
            listing = "\n".join(
                f"Option {i}:\n{react.step_text(o)}" for i, o in enumerate(options, 1)
            )
            parts.append(
                f"Step {number}. Possible next steps:\n{listing}\nI will choose option {position}."
            )
        if step.get("tool"):
            parts.append(react.tool_response(step.get("response", "")))
    parts.append(f"Outcome: {'Correct' if trajectory.get('correct') else 'Incorrect'}")
    return {
        "id": f"{trajectory.get('key', trajectory['id'])}/has",
        "kind": "has",
        "stage": "has",
        "trajectory_id": trajectory.get("key", trajectory["id"]),
        "question_id": trajectory["id"],
        "source_docs": trajectory.get("source_docs", []),
        "correct": bool(trajectory.get("correct")),
        "chosen_positions": chosen,
        "options_per_step": [len(a) + 1 if a else 1 for a in alternatives],
        "generator": generator,
        "text": "\n\n".join(parts),
    }


def _questions_to_trajectories(items: list[dict], ctx, policy, judge) -> list[dict]:
    questions = [i for i in items if "steps" not in i]
    trajectories = [i for i in items if "steps" in i]
    if questions:
        config = agent_config(ctx.config)
        rolled = rollout(questions, policy, ctx_env(ctx), config, judge=judge, seed=ctx.seed)
        sources = {q["id"]: q.get("source_docs", []) for q in questions}
        for record in rolled:
            record["source_docs"] = sources.get(record["id"], [])
        trajectories += rolled
    return trajectories


def agent_config(config) -> AgentConfig:
    """The agent limits of a pipeline config (`agent:` section when the config has one)."""
    raw = getattr(config, "agent", None) or {}
    return AgentConfig(**raw) if isinstance(raw, dict) else raw


def ctx_env(ctx):
    """The stage context's environment, built from the config when the engine gave none."""
    if ctx.env is None:
        from data_synthesis.environment.executor import environment_for

        ctx.env = environment_for(ctx.config, ctx.llm)
    return ctx.env


def _count_outcomes(trajectories: list[dict], ctx) -> None:
    for trajectory in trajectories:
        ctx.counters.add("has", "trajectories")
        ctx.counters.add(
            "has", f"outcome_{'correct' if trajectory.get('correct') else 'incorrect'}"
        )
        if trajectory.get("failure"):
            ctx.counters.add("has", f"rollout_failure:{trajectory['failure']}")


def _documents(trajectories, alternatives_of, ctx, generator) -> list[dict]:
    out = []
    for trajectory, alternatives in zip(trajectories, alternatives_of):
        steps = trajectory_steps(trajectory)
        if not steps:
            ctx.counters.reject("has", "trajectory without decisions")
            continue
        ctx.counters.add("has", "steps", len(steps))
        ctx.counters.add("has", "alternatives", sum(len(a) for a in alternatives))
        missing = sum(1 for a in alternatives if not a)
        if missing:
            ctx.counters.add("has", "step without alternatives", missing)
        rng = ctx.rng(trajectory.get("key", trajectory["id"]))
        out.append(has_document(trajectory, alternatives, rng, generator))
    return out


class HeuristicHAS:
    """CPU baseline: the scripted agent's rollouts over the real environment, its other
    candidates as alternatives, outcomes from normalised answer matching."""

    name = "has"

    def run(self, items: list[dict], ctx) -> list[dict]:
        config = agent_config(ctx.config)
        policy = HeuristicPolicy(config.max_turns)
        trajectories = _questions_to_trajectories(items, ctx, policy, judge=None)
        _count_outcomes(trajectories, ctx)
        n = ctx.config.has_alternatives
        alternatives_of = []
        for trajectory in trajectories:
            steps = trajectory_steps(trajectory)
            rng = ctx.rng(f"{trajectory.get('key', trajectory['id'])}/alternatives")
            alternatives_of.append(
                [
                    heuristic_alternatives(trajectory["question"], steps, k, n, rng)
                    for k in range(len(steps))
                ]
            )
        return _documents(trajectories, alternatives_of, ctx, "heuristic")


class LLMHAS:
    """The paper's HAS: LLM rollouts (judged by the LLM plus matching) and LLM alternatives
    generated with each step's full context, validated against the tool registry."""

    name = "has"

    def run(self, items: list[dict], ctx) -> list[dict]:
        config = agent_config(ctx.config)
        env = ctx_env(ctx)
        policy = LLMPolicy(ctx.llm, env.registry, config, seed=ctx.seed)
        trajectories = _questions_to_trajectories(items, ctx, policy, judge=ctx.llm)
        policy.close()
        _count_outcomes(trajectories, ctx)
        n = ctx.config.has_alternatives
        retries = getattr(getattr(ctx.config, "backend", None), "max_retries", 2)
        slots = [
            (t, k) for t, tr in enumerate(trajectories) for k in range(len(trajectory_steps(tr)))
        ]
        found: dict[tuple[int, int], list[dict]] = {slot: [] for slot in slots}
        pending = list(slots)
        for attempt in range(retries + 1):
            if not pending:
                break
            prompts = [
                [
                    {
                        "role": "user",
                        "content": _alternatives_prompt(trajectories[t], k, n, env.registry),
                    }
                ]
                for t, k in pending
            ]
            try:
                replies = ctx.llm.generate(prompts, seed=ctx.seed + 104729 * attempt)
            except Exception as error:  # noqa: BLE001 - counted; the steps stay plain
                ctx.counters.reject("has", f"alternatives call failed: {type(error).__name__}")
                break
            still = []
            for (t, k), reply in zip(pending, replies):
                original = trajectory_steps(trajectories[t])[k]
                kept, rejects = parse_alternatives(reply, original, env.registry, n)
                for reason, count in rejects.items():
                    ctx.counters.reject("has", reason, count)
                found[(t, k)] = kept
                if not kept:
                    still.append((t, k))
            if still and attempt < retries:
                ctx.counters.add("has", "alternatives retried", len(still))
            pending = still
        alternatives_of = [
            [found[(t, k)] for k in range(len(trajectory_steps(tr)))]
            for t, tr in enumerate(trajectories)
        ]
        return _documents(trajectories, alternatives_of, ctx, getattr(ctx.llm, "name", "llm"))


def _alternatives_prompt(trajectory: dict, k: int, n: int, registry) -> str:
    steps = trajectory_steps(trajectory)
    return ALTERNATIVES_PROMPT.format(
        n=n,
        tools=registry.prompt_block(),
        question=trajectory["question"],
        history=react.transcript(steps[:k]),
    )


def incorrect_share(counts: dict) -> float | None:
    """The share of Incorrect trajectories from the `has` counters."""
    correct, incorrect = counts.get("outcome_correct", 0), counts.get("outcome_incorrect", 0)
    return round(incorrect / (correct + incorrect), 4) if correct + incorrect else None
