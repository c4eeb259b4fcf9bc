"""The ReAct trajectory format of deep-research agents (Tongyi DeepResearch style).

    <think>...</think>
    <tool_call>{"name": "search", "arguments": {"query": ["..."]}}</tool_call>
    <tool_response>...</tool_response>
    <answer>...</answer>

Python code goes inside <code>...</code> in the python tool's arguments.

`parse_step` reads one decision back from a model reply (the agent loop, HAS alternatives), and
`transcript` renders steps with their real tool responses, so writing and reading the format
live in one place.
"""

from __future__ import annotations

import json
import re


def think(text: str) -> str:
    return f"<think>\n{text}\n</think>"


def tool_call(name: str, arguments: dict) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n</tool_call>"


def tool_response(text: str) -> str:
    return f"<tool_response>\n{text}\n</tool_response>"


def answer(text: str) -> str:
    return f"<answer>{text}</answer>"


def tools_block(tools: list[dict]) -> str:
    """The tool descriptions given to the model in prompts and written into training texts."""
    return "\n".join(
        f"- {t['name']}: {t['description']} Arguments: {json.dumps(t.get('arguments', {}))}"
        for t in tools
    )


def step_text(step: dict) -> str:
    """One decision: thought plus either a tool call or a final answer."""
    decision = (
        tool_call(step["tool"], step["arguments"]) if step.get("tool") else answer(step["answer"])
    )
    return think(step["thought"]) + "\n" + decision


_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_CODE = re.compile(r"<code>(.*?)(?:</code>|$)", re.DOTALL)


class StepParseError(ValueError):
    """A model reply that is neither a tool call nor an answer in the ReAct format."""


def parse_step(reply: str) -> dict:
    """The first decision in a model reply: {"thought", "tool", "arguments"} or
    {"thought", "answer"}. Text after the decision (an invented <tool_response>, a second call)
    is ignored. A python call may carry its code in `arguments.code` or, Tongyi-style, in a
    <code> block after the JSON. Raises StepParseError with the reason."""
    thought_match = _THINK.search(reply)
    thought = thought_match.group(1).strip() if thought_match else ""
    rest = reply[thought_match.end() :] if thought_match else reply
    call_match, answer_match = _TOOL_CALL.search(rest), _ANSWER.search(rest)
    if answer_match and (not call_match or answer_match.start() < call_match.start()):
        text = answer_match.group(1).strip()
        if not text:
            raise StepParseError("empty answer")
        return {"thought": thought, "answer": text}
    if not call_match:
        raise StepParseError("no <tool_call> or <answer>")
    body = call_match.group(1).strip()
    start = body.find("{")
    if start < 0:
        raise StepParseError("tool call without a JSON object")
    try:
        call, end = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError as error:
        raise StepParseError(f"tool call JSON invalid: {error.msg}") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise StepParseError("tool call JSON without a tool name")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models double-encode the arguments
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            raise StepParseError("tool call arguments are not a JSON object") from None
    code = _CODE.search(body[start + end :])
    if code and isinstance(arguments, dict) and "code" not in arguments:
        arguments = {**arguments, "code": code.group(1).strip()}
    return {"thought": thought, "tool": call["name"], "arguments": arguments}


def call_of(step: dict) -> dict | None:
    """The {"name", "arguments"} call of a tool step (None for an answer)."""
    if not step.get("tool"):
        return None
    return {"name": step["tool"], "arguments": step.get("arguments") or {}}


def transcript(steps: list[dict]) -> str:
    """The steps so far as ReAct text: each decision, then its real tool response."""
    parts = []
    for step in steps:
        parts.append(step_text(step))
        if step.get("tool"):
            parts.append(tool_response(step.get("response", "")))
    return "\n".join(parts)
