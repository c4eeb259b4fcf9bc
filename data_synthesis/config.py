"""Pipeline configuration: typed dataclasses loaded from YAML (configs/cpu_default.yaml)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_TOOLS = [
    {
        "name": "search",
        "description": "Web search; returns the top-10 results for each query.",
        "arguments": {"query": "list of search queries"},
    },
    {
        "name": "visit",
        "description": "Visit web pages and summarise them towards a goal.",
        "arguments": {"url": "list of URLs", "goal": "what to look for"},
    },
    {
        "name": "python",
        "description": "Run Python code (inside <code>) and return its output.",
        "arguments": {"code": "Python source"},
    },
    {
        "name": "google_scholar",
        "description": "Search scholarly literature.",
        "arguments": {"query": "list of queries"},
    },
    {
        "name": "parse_file",
        "description": "Parse user-provided files into text.",
        "arguments": {"files": "list of file names"},
    },
]


@dataclass
class BackendConfig:
    """Which generator writes the text: rule/template-based (CPU default) or an offline LLM."""

    type: str = "template"  # template | transformers | vllm | openai
    model: str | None = None  # model directory (transformers/vllm) or served model name (openai)
    base_url: str | None = None  # openai: e.g. http://localhost:8000/v1 (a local `vllm serve`)
    tensor_parallel_size: int = 1
    dtype: str = "auto"  # vllm: weights/activations dtype (auto, bfloat16, float16, float32)
    temperature: float = 0.7
    max_tokens: int = 512
    max_retries: int = 2
    batch_size: int = 16


@dataclass
class QuestionConfig:
    per_entity: int = 2
    styles: list[str] = field(
        default_factory=lambda: ["factual", "multi_hop", "numeric", "comparison", "obfuscated"]
    )
    max_hops: int = 3


@dataclass
class FilterConfig:
    near_duplicate_threshold: float = 0.9  # MinHash Jaccard estimate
    eval_sets: list[str] = field(default_factory=list)  # JSONL files with a `text` or `question`
    ngram: int = 13  # decontamination n-gram length (words)


@dataclass
class PipelineConfig:
    """Everything a synthesis run needs."""

    seed: int = 1234
    num_shards: int = 1
    plans_per_question: int = 3
    has_alternatives: int = 3
    max_reasoning_chars: int = 4000
    backend: BackendConfig = field(default_factory=BackendConfig)
    questions: QuestionConfig = field(default_factory=QuestionConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    tools: list[dict] = field(default_factory=lambda: [dict(t) for t in DEFAULT_TOOLS])

    @property
    def tool_names(self) -> list[str]:
        return [tool["name"] for tool in self.tools]


def load_pipeline_config(path: str | Path | None) -> PipelineConfig:
    """The config in `path` (a YAML mapping), or the CPU default; unknown keys are errors."""
    if path is None:
        return PipelineConfig()
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return _fill(PipelineConfig, raw, str(path))


def _fill(cls, raw: dict, where: str):
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(fields)}")
    values = {}
    for key, value in raw.items():
        kind = fields[key].type
        nested = {
            "BackendConfig": BackendConfig,
            "QuestionConfig": QuestionConfig,
            "FilterConfig": FilterConfig,
        }.get(kind if isinstance(kind, str) else "")
        values[key] = _fill(nested, value, f"{where}.{key}") if nested else value
    for tool in values.get("tools", []):
        if not isinstance(tool, dict) or not {"name", "description"} <= set(tool):
            raise ValueError(f"{where}.tools: each tool needs a name and a description: {tool!r}")
    return cls(**values)
