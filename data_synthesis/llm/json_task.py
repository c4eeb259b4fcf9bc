"""Prompt -> strict JSON -> schema check, with retries; failures are counted and dropped.

Prompts are versioned templates in data_synthesis/prompts/ (`name_vN.txt`, Python format fields).
A reply is accepted when it contains one JSON object that passes the task's check; otherwise the
prompt is retried (with another seed) up to `max_retries` times, then dropped with its reason
counted. Nothing here raises on model output: a shard never crashes on a bad reply.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def load_prompt(name: str) -> str:
    """A versioned prompt template, e.g. load_prompt("plan_v1")."""
    return (PROMPTS / f"{name}.txt").read_text(encoding="utf-8")


class SchemaError(ValueError):
    """A reply whose JSON does not have the required shape."""


def parse_json_reply(reply: str, check: Callable[[dict], None]) -> dict:
    """The JSON object in a reply, checked; ValueError (with the reason) otherwise."""
    found = _JSON_OBJECT.search(reply)
    if not found:
        raise SchemaError("no JSON object in the reply")
    try:
        obj = json.loads(found.group(0))
    except json.JSONDecodeError as error:
        raise SchemaError(f"invalid JSON: {error.msg}") from None
    if not isinstance(obj, dict):
        raise SchemaError("the JSON is not an object")
    check(obj)
    return obj


def require(obj: dict, **types) -> None:
    """Schema check: each key present with the given type (non-empty for str/list)."""
    for key, kind in types.items():
        if key not in obj:
            raise SchemaError(f"missing key {key!r}")
        if not isinstance(obj[key], kind) or (kind in (str, list) and not obj[key]):
            raise SchemaError(f"key {key!r} is not a non-empty {kind.__name__}")


def run_json_task(
    backend,
    prompts: list[str],
    check: Callable[[dict], None],
    seed: int,
    max_retries: int,
    rejects: Counter,
) -> list[dict | None]:
    """One parsed object per prompt, or None (counted in `rejects` by reason) after retries."""
    results: list[dict | None] = [None] * len(prompts)
    pending = list(range(len(prompts)))
    last_error: dict[int, str] = {}
    for attempt in range(max_retries + 1):
        if not pending:
            break
        replies = backend.generate([prompts[i] for i in pending], seed=seed + 1000 * attempt)
        still = []
        for index, reply in zip(pending, replies):
            try:
                results[index] = parse_json_reply(reply, check)
            except SchemaError as error:
                last_error[index] = str(error)
                still.append(index)
        pending = still
    for index in pending:
        rejects[f"malformed output: {last_error[index].split(':')[0]}"] += 1
    return results
