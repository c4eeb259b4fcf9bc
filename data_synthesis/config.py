"""Pipeline configuration: typed dataclasses loaded from YAML (configs/cpu_default.yaml) and
`key.sub=value` overrides by the same loader as the training config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from megatron_agentic.config_loader import ConfigError, load_dataclass

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
    """Which generator writes the text: the heuristic baseline (CPU default) or an LLM."""

    # "template": the older name of "heuristic", accepted and renamed at load
    type: Literal["heuristic", "transformers", "vllm", "openai", "template"] = "heuristic"
    model: str | None = None  # model directory (transformers/vllm) or served model name (openai)
    base_url: str | None = None  # openai: e.g. http://localhost:8000/v1 (a local `vllm serve`)
    tensor_parallel_size: int = 1
    dtype: str = "auto"  # vllm: weights/activations dtype (auto, bfloat16, float16, float32)
    temperature: float = 0.7
    max_tokens: int = 512
    max_retries: int = 2
    batch_size: int = 16
    request_timeout_s: float = 300.0  # openai: per request
    request_retries: int = 4  # openai: connection/timeout retries with backoff
    retry_backoff_s: float = 1.0
    enable_thinking: bool = False  # chat-template kwarg (Qwen3 thinking mode off by default)
    max_model_len: int | None = None  # vllm


@dataclass
class QuestionConfig:
    per_entity: int = 2
    styles: list[str] = field(
        default_factory=lambda: [
            "factual",
            "multi_hop",
            "numeric",
            "temporal",
            "comparison",
            "obfuscated",
        ]
    )
    max_hops: int = 3


@dataclass
class FilterConfig:
    near_duplicate_threshold: float = 0.9  # MinHash Jaccard estimate
    eval_sets: list[str] = field(default_factory=list)  # JSONL files with a `text` or `question`
    ngram: int = 13  # decontamination n-gram length (words)


@dataclass
class SlurmConfig:
    """sbatch settings of the SLURM executor (datatrove's SlurmPipelineExecutor)."""

    partition: str = "batch"
    time: str = "24:00:00"
    cpus_per_task: int = 4
    mem_per_cpu_gb: int = 4
    gpus_per_task: int = 0
    qos: str = ""
    env_command: str = ""  # e.g. "source /path/to/.venv/bin/activate"
    max_array_size: int = 1001


@dataclass
class EngineConfig:
    """How the run is cut into tasks (data_synthesis/engine). Output never depends on `tasks`,
    `partition_tasks`, `index_partitions` or `workers`; it depends on `partitions` (kept in the run's
    fingerprint, as are the task counts: a rerun must find its tasks' completion marks)."""

    tasks: int | None = None  # map tasks over the input; None: one per 64 MiB of its text
    partitions: int | None = None  # entity/question partitions; None: one per 64 MiB of text
    # tasks of the partition stages (questions, planning, reasoning, has), each covering every
    # N-th partition with one LLM engine (a model load per task, not per partition); 0: one
    # task per partition
    partition_tasks: int = 0
    # partitions of the value and relation look-ups, i.e. the value_index stage's tasks; None:
    # as `partitions`, at most 1,024. Each value_index task reads a range of every reduce
    # task's index_rows file, so the stage opens about partitions x index_partitions files:
    # 20.5M at the 1 TB plan's 16,384 partitions with 1,024 (docs/benchmarks.md)
    index_partitions: int | None = None
    workers: int = 1  # local executor: tasks run at once
    batch_size: int = 64  # items per method call (one LLM batch, one checkpoint line)
    batch_chars: int = 1_000_000  # ... and at most this much input text per batch
    max_document_chars: int = 200_000  # longer documents are split at paragraph/sentence ends
    # final/{fas,has}.jsonl: each kind's shards (final/<kind>/*.jsonl.zst, always written)
    # decompressed and joined into one plain file when their text is at most this many MiB;
    # 0: the shards only
    final_single_file_mb: int = 2048
    # a hub entity's record keeps a stable sample of this many statements/sources/links (0: all)
    max_statements_per_entity: int = 512
    executor: Literal["local", "slurm"] = "local"
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


@dataclass
class PipelineConfig:
    """Everything a synthesis run needs."""

    seed: int = 1234
    plans_per_question: int = 3
    judge: bool = True  # LLM judge for plans and answers when an LLM backend is set
    has_alternatives: int = 3
    max_reasoning_chars: int = 4000
    backend: BackendConfig = field(default_factory=BackendConfig)
    questions: QuestionConfig = field(default_factory=QuestionConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    tools: list[dict] = field(default_factory=lambda: [dict(t) for t in DEFAULT_TOOLS])
    engine: EngineConfig = field(default_factory=EngineConfig)
    environment: dict = field(default_factory=dict)  # EnvironmentConfig (environment/executor.py)
    agent: dict = field(default_factory=dict)  # AgentConfig (data_synthesis/agent)
    heldout_share: float = 0.1  # documents (and their questions) kept out for evaluation

    @property
    def tool_names(self) -> list[str]:
        return [tool["name"] for tool in self.tools]


def load_pipeline_config(path: str | Path | None, overrides=()) -> PipelineConfig:
    """The config in `path` (a YAML mapping) or the CPU default, with dotted `key.sub=value`
    overrides: the training config's loader (megatron_agentic.config_loader), so unknown keys,
    wrong types and choices outside their values are refused naming the file:line or override."""
    config = load_dataclass(PipelineConfig, path, overrides)
    if config.backend.type == "template":  # the older name of the heuristic baseline
        config.backend.type = "heuristic"
    for tool in config.tools:
        if not isinstance(tool, dict) or not {"name", "description"} <= set(tool):
            raise ConfigError(f"{path}: tools: each tool needs a name and a description: {tool!r}")
    return config
