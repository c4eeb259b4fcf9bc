"""The ReAct agent loop: a policy proposes a step, the environment executes it, until an answer.

Many questions run at once: at each turn the policy gets every open trajectory in ONE call (one
backend batch, so vLLM stays busy), the environment executes the tool calls, and finished
trajectories leave the batch. A trajectory records every step with the REAL tool response:

    {"question", "steps": [{"thought", "tool", "arguments", "response", "ok", "error"}, ...,
     {"thought", "answer"}], "prediction", "turns", "tool_calls", "failure": reason | None}

Nothing here stops a run on bad model behaviour; each trajectory ends with a failure reason:
"model unreachable", "timeout", "context exceeded", "malformed tool calls", "loop",
"max turns", "backend error". A malformed reply or an invalid call is shown to the model as an
error observation and counted (`malformed`, `invalid_calls`); after `max_malformed` malformed
replies in a row the trajectory fails. The same call repeated `loop_repeats` times in a row is a
loop.

Policies: `LLMPolicy` (any data_synthesis.llm backend; the conversation is chat in our FAS
document format) and the scripted `HeuristicPolicy` (agent/heuristic.py, no LLM).
"""

from __future__ import annotations

import json
import socket
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from data_synthesis import react
from data_synthesis.environment.executor import Scope

SYSTEM_PROMPT = """You are a research agent. Answer the user's question by using the tools, one step per reply.

Tools:
{tools}

Each reply is one step: first your reasoning in <think>...</think>, then EITHER one tool call
<tool_call>{{"name": "<tool>", "arguments": {{...}}}}</tool_call>
OR, when you know the answer, <answer>short final answer</answer>.
Tool results come back in <tool_response>...</tool_response>."""


# One worked exchange on a made-up fact (small models follow a shown format far better than a
# described one); it names no entity of any corpus.
EXAMPLE = [
    {
        "role": "user",
        "content": "Question: In which year did the Old Mill Bridge of Tarnwick open?",
    },
    {
        "role": "assistant",
        "content": "<think>I do not know this bridge; I search for it.</think>\n<tool_call>"
        '{"name": "search", "arguments": {"query": ["Old Mill Bridge Tarnwick opened"]}}'
        "</tool_call>",
    },
    {
        "role": "user",
        "content": "<tool_response>\n1. [Old Mill Bridge](https://example.org/old-mill-bridge)\n"
        "The Old Mill Bridge of Tarnwick opened in 1872.\n</tool_response>",
    },
    {
        "role": "assistant",
        "content": "<think>The result says it opened in 1872.</think>\n<answer>1872</answer>",
    },
]


def conversation(system: str, question: str, steps: list[dict], response_chars: int) -> list[dict]:
    """Chat messages of a rollout so far: the instructions and one worked example, then each
    step as an assistant turn and each real tool response as a user turn in <tool_response>
    tags (our FAS document format, turn by turn)."""
    messages = [
        {"role": "system", "content": system},
        *EXAMPLE,
        {"role": "user", "content": f"Question: {question}"},
    ]
    for step in steps:
        messages.append({"role": "assistant", "content": react.step_text(step)})
        if step.get("tool"):
            response = str(step.get("response", ""))[:response_chars]
            messages.append({"role": "user", "content": react.tool_response(response)})
    return messages


# A reply ends with its decision (the backend cuts there; parse_step reads unclosed tags), so a
# model never spends tokens inventing the tool's response.
STOP = ["</tool_call>", "</answer>"]


@dataclass
class AgentConfig:
    """Limits of one rollout."""

    max_turns: int = 8
    call_timeout_s: float = 120.0  # one model call
    max_prompt_chars: int = 24000  # client-side context guard (~6K tokens)
    max_malformed: int = 2
    loop_repeats: int = 3
    response_chars: int = 3000  # a tool response as shown back to the model
    concurrency: int = 8  # parallel requests to a served model


@dataclass
class AgentState:
    """One open trajectory."""

    key: str
    question: str
    scope: Scope | None = None  # the question's id and source documents (its searches' shards)
    steps: list[dict] = field(default_factory=list)
    replies: int = 0
    malformed: int = 0
    malformed_in_row: int = 0
    invalid_calls: int = 0
    failure: str | None = None
    prediction: str | None = None
    last_reply: str = ""

    @property
    def done(self) -> bool:
        return self.failure is not None or self.prediction is not None

    def record(self) -> dict:
        tools = [s for s in self.steps if s.get("tool") and s["tool"] != "invalid"]
        return {
            "question": self.question,
            "steps": self.steps,
            "prediction": self.prediction,
            "turns": self.replies,  # model replies (malformed ones included)
            "tool_calls": len(tools),
            "malformed": self.malformed,
            "invalid_calls": self.invalid_calls,
            "failure": self.failure,
        }


class PolicyError(Exception):
    """A policy could not produce a reply for one state; `reason` is a failure reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def classify_error(error: BaseException) -> str:
    """A failure reason for an exception raised by a backend call."""
    text = str(error).lower()
    if isinstance(error, (FutureTimeout, TimeoutError, socket.timeout)) or (
        "timed out" in text or "no answer within" in text
    ):
        return "timeout"
    if "context" in text and ("length" in text or "maximum" in text or "exceed" in text):
        return "context exceeded"
    if "maximum" in text and "token" in text:
        return "context exceeded"
    if isinstance(error, (ConnectionError, urllib.error.URLError)) or any(
        cue in text for cue in ("connection refused", "gave up after", "unreachable", "urlerror")
    ):
        return "model unreachable"
    return "backend error"


class LLMPolicy:
    """Next steps from an LLM backend; each prompt is the whole conversation so far."""

    def __init__(self, backend, registry, config: AgentConfig, seed: int = 0):
        self.backend, self.registry, self.config, self.seed = backend, registry, config, seed
        self._pool = ThreadPoolExecutor(max_workers=max(1, config.concurrency))

    def prompt(self, state: AgentState) -> list[dict]:
        system = SYSTEM_PROMPT.format(tools=self.registry.prompt_block())
        return conversation(system, state.question, state.steps, self.config.response_chars)

    def replies(self, states: list[AgentState], turn: int) -> list[str | PolicyError]:
        """One reply (or PolicyError) per state; a failing request fails only its state."""
        prompts, results = [], [None] * len(states)
        for i, state in enumerate(states):
            prompt = self.prompt(state)
            size = sum(len(m["content"]) for m in prompt)
            if size > self.config.max_prompt_chars:
                results[i] = PolicyError("context exceeded", f"{size} characters")
            prompts.append(prompt)
        pending = [i for i, r in enumerate(results) if r is None]
        seeds = {i: self.seed + 7919 * turn + i for i in pending}
        if pending and not hasattr(self.backend, "url"):  # local model: one batched call
            try:
                replies = self.backend.generate(
                    [prompts[i] for i in pending], seeds[pending[0]], stop=STOP
                )
                for i, reply in zip(pending, replies):
                    results[i] = reply
                return results
            except Exception:  # noqa: BLE001 - retried item by item below, to isolate the failure
                pass
        futures = {
            i: self._pool.submit(self.backend.generate, [prompts[i]], seeds[i], stop=STOP)
            for i in pending
        }
        for i, future in futures.items():
            try:
                results[i] = future.result(timeout=self.config.call_timeout_s)[0]
            except FutureTimeout:
                results[i] = PolicyError("timeout", f"no reply in {self.config.call_timeout_s} s")
            except Exception as error:  # noqa: BLE001 - any backend failure is one item's failure
                results[i] = PolicyError(classify_error(error), str(error)[:300])
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def run_agent(questions: list[dict], policy, env, config: AgentConfig) -> list[dict]:
    """Roll out every question ({"key", "question"}, and its "id" and "source_docs" when its
    searches are scoped: Environment.execute) to an answer or a failure reason."""
    states = [AgentState(q["key"], q["question"], Scope.of(q)) for q in questions]
    for turn in range(config.max_turns):
        open_states = [s for s in states if not s.done]
        if not open_states:
            break
        for state, reply in zip(open_states, policy.replies(open_states, turn)):
            state.replies += not isinstance(reply, PolicyError)
            if isinstance(reply, PolicyError):
                state.failure = reply.reason
                state.last_reply = str(reply)
                continue
            if isinstance(reply, dict):  # a scripted policy returns the step itself
                _advance(state, reply, env, config)
                continue
            state.last_reply = reply
            try:
                step = react.parse_step(reply)
            except react.StepParseError as error:
                _malformed(state, str(error), reply, config)
                continue
            _advance(state, step, env, config)
    for state in states:
        if not state.done:
            state.failure = "max turns"
    return [dict(state.record(), key=state.key) for state in states]


def _malformed(state: AgentState, reason: str, reply: str, config: AgentConfig) -> None:
    state.malformed += 1
    state.malformed_in_row += 1
    if state.malformed_in_row >= config.max_malformed:
        state.failure = "malformed tool calls"
        return
    # shown to the model as an observation of a step it did not manage to write
    state.steps.append(
        {
            "thought": reply.strip()[:500],
            "tool": "invalid",
            "arguments": {},
            "response": f"Error: {reason}. Reply with <think>...</think> then one "
            "<tool_call>{...}</tool_call> or <answer>...</answer>.",
            "ok": False,
            "error": f"malformed: {reason}",
        }
    )


def _advance(state: AgentState, step: dict, env, config: AgentConfig) -> None:
    state.malformed_in_row = 0
    if "answer" in step and not step.get("tool"):
        state.steps.append({"thought": step.get("thought", ""), "answer": step["answer"]})
        state.prediction = str(step["answer"])
        return
    call = react.call_of(step)
    result = env.execute(call, state.scope)
    if result.error and (
        result.error.startswith(("unknown tool", "invalid arguments", "malformed call"))
    ):
        state.invalid_calls += 1
    state.steps.append(
        {
            "thought": step.get("thought", ""),
            "tool": step["tool"],
            "arguments": step.get("arguments") or {},
            "response": result.text,
            "ok": result.ok,
            "error": result.error,
        }
    )
    calls = [json.dumps(react.call_of(s), sort_keys=True) for s in state.steps if s.get("tool")]
    repeats = config.loop_repeats
    if len(calls) >= repeats and len(set(calls[-repeats:])) == 1:
        state.failure = "loop"
