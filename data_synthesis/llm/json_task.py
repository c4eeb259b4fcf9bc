"""Prompt -> schema-constrained JSON -> strict check, with retries; every failure counted by reason.

Prompts are versioned templates in data_synthesis/prompts/ (`name_vN.txt`). A template has
`[system]`, optional `[example_user]`/`[example_assistant]` (one worked exchange: small models
need it to start a JSON reply), and `[user]` sections, with Python format fields.

A reply is accepted when, after stripping any thinking block, it holds one JSON object that passes
the task's check. Otherwise the prompt is retried (another seed) up to `retries` times, then
dropped, with its last reason counted in `counters` under the stage ("malformed JSON", "schema:
missing key 'answer'", "empty reply"). Model output never raises here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from data_synthesis.llm import Messages, strip_thinking

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
_SECTION = re.compile(r"^\[(system|example_user|example_assistant|user)\]\s*$", re.MULTILINE)


class SchemaError(ValueError):
    """A reply whose JSON is missing or does not have the required shape."""


@dataclass(frozen=True)
class Prompt:
    """A versioned chat prompt template."""

    name: str
    sections: dict[str, str]

    def messages(self, **fields) -> Messages:
        def fill(key):
            return self.sections[key].format(**fields).strip()

        out = [{"role": "system", "content": fill("system")}]
        if "example_user" in self.sections:
            out += [
                {"role": "user", "content": self.sections["example_user"].strip()},
                {"role": "assistant", "content": self.sections["example_assistant"].strip()},
            ]
        return out + [{"role": "user", "content": fill("user")}]


def load_prompt(name: str) -> Prompt:
    """The template data_synthesis/prompts/<name>.txt, e.g. load_prompt("plan_v2")."""
    path = PROMPTS / f"{name}.txt"
    parts = _SECTION.split(path.read_text(encoding="utf-8"))
    sections = dict(zip(parts[1::2], parts[2::2]))
    for required in ("system", "user"):
        if required not in sections:
            raise ValueError(f"{path}: missing the [{required}] section")
    if ("example_user" in sections) != ("example_assistant" in sections):
        raise ValueError(f"{path}: [example_user] and [example_assistant] go together")
    return Prompt(name, sections)


def parse_json_reply(reply: str, check: Callable[[dict], None]) -> dict:
    """The first JSON object in a reply (thinking stripped), checked; SchemaError otherwise."""
    text, _ = strip_thinking(reply)
    if not text:
        raise SchemaError("empty reply")
    decoder = json.JSONDecoder()
    error = "no JSON object"
    for start in [m.start() for m in re.finditer(r"\{", text)]:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            error = "malformed JSON"
            continue
        if isinstance(obj, dict):
            check(obj)
            return obj
    raise SchemaError(error)


def require(obj: dict, **types) -> None:
    """Schema check: each key present with the given type (non-empty for str)."""
    for key, kind in types.items():
        if key not in obj:
            raise SchemaError(f"schema: missing key {key!r}")
        if not isinstance(obj[key], kind) or (kind is str and not obj[key].strip()):
            raise SchemaError(f"schema: key {key!r} is not a non-empty {kind.__name__}")


def run_json_task(
    backend,
    prompts: list[Messages],
    schema: dict,
    check: Callable[[dict], None],
    *,
    seed: int,
    retries: int,
    counters,
    stage: str,
) -> list[dict | None]:
    """One checked object per prompt, or None (its reason counted under `stage`) after retries."""
    results: list[dict | None] = [None] * len(prompts)
    pending = list(range(len(prompts)))
    last_error: dict[int, str] = {}
    for attempt in range(retries + 1):
        if not pending:
            break
        replies = _generate(backend, [prompts[i] for i in pending], seed + 1000 * attempt, schema)
        counters.add(stage, "llm calls", len(pending))
        still = []
        for index, reply in zip(pending, replies):
            if reply is None:  # never retried: the same prompt cannot fit next time either
                counters.reject(stage, TOO_LONG)
                continue
            if strip_thinking(reply)[1]:
                counters.add(stage, "thinking blocks stripped", 1)
            try:
                results[index] = parse_json_reply(reply, check)
            except SchemaError as error:
                last_error[index] = str(error)
                still.append(index)
        if attempt < retries:
            counters.add(stage, "llm retries", len(still))
        pending = still
    for index in pending:
        counters.reject(stage, last_error[index])
    return results


TOO_LONG = "prompt longer than the model's context"
_TOO_LONG_CUES = ("maximum model length", "maximum context length", "max_tokens must be at least")


def _too_long(error: BaseException) -> bool:
    return any(cue in str(error).lower() for cue in _TOO_LONG_CUES)


def _generate(backend, prompts: list[Messages], seed: int, schema: dict) -> list[str | None]:
    """The batch's replies; a prompt the model's context cannot hold gets None instead of failing
    the batch (vLLM refuses the whole batch, a server answers HTTP 400). Other errors propagate:
    a server that is down stops the run with its message."""
    try:
        return backend.generate(prompts, seed, schema)
    except Exception as error:  # noqa: BLE001 - only the context-length refusal is isolated
        if not _too_long(error):
            raise
    replies: list[str | None] = []
    for i, prompt in enumerate(prompts):  # request i keeps its seed (seed + i), as in the batch
        try:
            replies += backend.generate([prompt], seed + i, schema)
        except Exception as error:  # noqa: BLE001
            if not _too_long(error):
                raise
            replies.append(None)
    return replies


def object_schema(properties: dict, required: list[str] | None = None) -> dict:
    """A JSON schema object with these properties, all required unless told, nothing else."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


STRING = {"type": "string"}
