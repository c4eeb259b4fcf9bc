"""The tool registry: one list of tools feeds the prompts, the validation of calls and the executor.

Built-in tools (the paper's action space, offline):

- ``search``          BM25 over the passages of local JSONL corpora, top-10 results;
- ``visit``           the text of a page of the corpus (or, with an LLM, a summary toward a goal);
- ``python``          Python code run in a sandboxed subprocess (time/memory limits, no network);
- ``google_scholar``  ``search`` over a separate "scholar" corpus when configured;
- ``parse_file``      the text of files under a configured directory.

Custom tools are declared once, in YAML (see examples/custom_tools/tools.yaml), with a JSON schema
of their arguments and how to run them:

    tools:
      - name: sql_query
        description: Run a read-only SQL query on the analytics warehouse.
        parameters: {type: object, properties: {sql: {type: string}}, required: [sql]}
        run: {python: "examples.custom_tools.warehouse:sql_query"}   # module:function(**arguments)
      - name: wiki_search
        description: Search the internal engineering wiki.
        parameters: {type: object, properties: {query: {type: array, items: {type: string}}}}
        run: {search: {corpus: examples/custom_tools/wiki.jsonl}}    # BM25 over its own corpus
      - name: word_count
        description: Count the words of a text.
        run: {command: ["wc", "-w"], stdin: text}                    # argument `text` on stdin

The older form ``arguments: {name: "description"}`` (a description starting with "list" means a
list of strings) is accepted and turned into a JSON schema. A tool with no ``run`` and no built-in
implementation is still listed in prompts (a synthesis-only tool) but ``executable`` is False, and
the environment answers its calls with an error.

Calls have the shape of our ReAct documents: ``{"name": ..., "arguments": {...}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jsonschema
import yaml

_QUERY = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "minItems": 1,
    "description": "one or more search queries",
}

BUILTIN_TOOLS: dict[str, dict] = {
    "search": {
        "description": "Search the corpus; returns the top-10 results (title, url, snippet) for "
        "each query.",
        "parameters": {
            "type": "object",
            "properties": {"query": _QUERY},
            "required": ["query"],
        },
    },
    "visit": {
        "description": "Visit web pages (URLs from search results) and return their content, "
        "summarised towards the goal.",
        "parameters": {
            "type": "object",
            "properties": {
                "url": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                },
                "goal": {"type": "string", "description": "what to look for on the pages"},
            },
            "required": ["url", "goal"],
        },
    },
    "python": {
        "description": "Run Python code (inside <code>...</code>) in a sandbox without network and "
        "return what it prints.",
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "minLength": 1}},
            "required": ["code"],
        },
    },
    "google_scholar": {
        "description": "Search scholarly literature; returns the top-10 results.",
        "parameters": {
            "type": "object",
            "properties": {"query": _QUERY},
            "required": ["query"],
        },
    },
    "parse_file": {
        "description": "Parse user-provided files into text.",
        "parameters": {
            "type": "object",
            "properties": {
                "files": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            },
            "required": ["files"],
        },
    },
}
DEFAULT_TOOL_NAMES = ("search", "visit", "python")

RunKind = Literal["builtin", "python", "command", "search", "none"]


@dataclass(frozen=True)
class ToolSpec:
    """One tool: what the model sees (name, description, JSON schema of the arguments) and how
    the environment runs it (`run`)."""

    name: str
    description: str
    parameters: dict
    kind: RunKind = "builtin"
    run: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def executable(self) -> bool:
        return self.kind != "none"

    def prompt_line(self) -> str:
        return f"- {self.name}: {self.description} Arguments (JSON schema): " + json.dumps(
            self.parameters, ensure_ascii=False
        )

    def as_dict(self) -> dict:
        """The legacy dict form ({name, description, arguments}) used by react.tools_block."""
        props = self.parameters.get("properties", {})
        return {
            "name": self.name,
            "description": self.description,
            "arguments": {k: v.get("description", v.get("type", "")) for k, v in props.items()},
        }


class ToolRegistry:
    """The tools of a run, in order. Build it with `from_config` (a list of tool dicts, a YAML
    file holding `tools:`, or None for the defaults search/visit/python)."""

    def __init__(self, specs: list[ToolSpec]):
        names = [s.name for s in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tools: duplicate tool name(s) {duplicates}")
        self._specs = {s.name: s for s in specs}
        self._validators = {s.name: jsonschema.Draft202012Validator(s.parameters) for s in specs}

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, tools_cfg=None, where: str = "tools", base_dir: str | Path | None = None
    ) -> ToolRegistry:
        """Built-ins plus custom tools. `tools_cfg`: None (defaults), a list of tool dicts, a
        mapping with a `tools` key, or a path to such a YAML file. Relative paths in a tool's
        `run` are looked up as given, then under `base_dir` (the YAML file's folder)."""
        if tools_cfg is None:
            tools_cfg = [{"name": n} for n in DEFAULT_TOOL_NAMES]
        if isinstance(tools_cfg, (str, Path)):
            where, base_dir = str(tools_cfg), Path(tools_cfg).resolve().parent
            tools_cfg = yaml.safe_load(Path(tools_cfg).read_text(encoding="utf-8")) or {}
        if isinstance(tools_cfg, dict):
            if "tools" not in tools_cfg:
                raise ValueError(f"{where}: expected a `tools:` list")
            tools_cfg = tools_cfg["tools"]
        if not isinstance(tools_cfg, list) or not tools_cfg:
            raise ValueError(f"{where}: expected a non-empty list of tools, got {tools_cfg!r}")
        base = str(base_dir) if base_dir else ""
        return cls([_spec(t, f"{where}[{i}]", base) for i, t in enumerate(tools_cfg)])

    # --- what prompts and the executor read -------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> list[ToolSpec]:
        return list(self._specs.values())

    def get(self, name: str) -> ToolSpec | None:
        return self._specs.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def prompt_block(self) -> str:
        """The tool list given to the model in prompts and written into training texts."""
        return "\n".join(s.prompt_line() for s in self._specs.values())

    def as_dicts(self) -> list[dict]:
        return [s.as_dict() for s in self._specs.values()]

    # --- validation ---------------------------------------------------------------------------

    def validate_call(self, call) -> str | None:
        """None when `call` ({"name", "arguments"}) is a valid call of a listed tool, else the
        reject reason (short, stable prefix first so reasons can be counted)."""
        if not isinstance(call, dict):
            return "malformed call: not a JSON object"
        name = call.get("name")
        if not isinstance(name, str) or not name:
            return "malformed call: no tool name"
        if name not in self._specs:
            return f"unknown tool: {name!r} (tools: {', '.join(self._specs)})"
        arguments = call.get("arguments")
        if not isinstance(arguments, dict):
            return f"invalid arguments: {name} arguments are not a JSON object"
        error = jsonschema.exceptions.best_match(self._validators[name].iter_errors(arguments))
        if error is not None:
            path = ".".join(map(str, error.absolute_path)) or "arguments"
            return f"invalid arguments: {name}.{path}: {error.message}"
        return None

    def json_schema_for_call(self) -> dict:
        """JSON schema of one call of any listed tool, for constrained decoding (vLLM structured
        outputs / OpenAI `response_format`)."""
        return {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {"name": {"const": s.name}, "arguments": s.parameters},
                    "required": ["name", "arguments"],
                    "additionalProperties": False,
                }
                for s in self._specs.values()
            ]
        }


def _spec(raw, where: str, base_dir: str = "") -> ToolSpec:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ValueError(f"{where}: each tool needs a `name`: {raw!r}")
    unknown = set(raw) - {"name", "description", "parameters", "arguments", "run"}
    if unknown:
        raise ValueError(f"{where} ({raw['name']}): unknown key(s) {sorted(unknown)}")
    name = raw["name"]
    builtin = BUILTIN_TOOLS.get(name, {})
    description = raw.get("description") or builtin.get("description")
    if not description:
        raise ValueError(f"{where} ({name}): a custom tool needs a `description`")
    if "parameters" in raw:
        parameters = raw["parameters"]
    elif "arguments" in raw and not builtin:
        parameters = _schema_from_arguments(raw["arguments"], f"{where} ({name}).arguments")
    else:
        parameters = builtin.get("parameters") or {"type": "object", "properties": {}}
    try:
        jsonschema.Draft202012Validator.check_schema(parameters)
    except jsonschema.exceptions.SchemaError as error:
        raise ValueError(
            f"{where} ({name}).parameters: not a JSON schema: {error.message}"
        ) from None
    run = raw.get("run") or {}
    kind = _run_kind(run, bool(builtin), f"{where} ({name}).run")
    run = dict(run, base_dir=base_dir) if run and base_dir else dict(run)
    return ToolSpec(name, description.strip(), parameters, kind, run)


def _schema_from_arguments(arguments, where: str) -> dict:
    if not isinstance(arguments, dict):
        raise ValueError(f"{where}: expected a mapping of argument name -> description")
    properties = {}
    for key, text in arguments.items():
        text = str(text)
        if text.lower().startswith("list"):
            properties[key] = {"type": "array", "items": {"type": "string"}, "description": text}
        else:
            properties[key] = {"type": "string", "description": text}
    return {"type": "object", "properties": properties, "required": list(arguments)}


def _run_kind(run, builtin: bool, where: str) -> RunKind:
    if not isinstance(run, dict):
        raise ValueError(f"{where}: expected a mapping with one of python, command, search")
    chosen = [k for k in ("python", "command", "search") if k in run]
    if len(chosen) > 1:
        raise ValueError(f"{where}: give only one of python, command, search (got {chosen})")
    if not chosen:
        return "builtin" if builtin else "none"
    kind = chosen[0]
    if kind == "python" and (not isinstance(run["python"], str) or ":" not in run["python"]):
        raise ValueError(f"{where}.python: expected 'package.module:function'")
    if kind == "command" and not (
        isinstance(run["command"], list) and all(isinstance(a, str) for a in run["command"])
    ):
        raise ValueError(f"{where}.command: expected a list of strings (argv)")
    if kind == "search" and not (isinstance(run["search"], dict) and run["search"].get("corpus")):
        raise ValueError(f"{where}.search: expected {{corpus: path.jsonl}}")
    return kind
