"""The ReAct trajectory format of deep-research agents (Tongyi DeepResearch style).

    <think>...</think>
    <tool_call>{"name": "search", "arguments": {"query": ["..."]}}</tool_call>
    <tool_response>...</tool_response>
    <answer>...</answer>

Python code goes inside <code>...</code> in the python tool's arguments.
"""

from __future__ import annotations

import json


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
