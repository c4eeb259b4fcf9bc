"""The training configuration: typed dataclasses, YAML recipes, and `key.sub=value` overrides.

A recipe is a YAML file with one mapping per section below; `model.preset` picks a
`megatron_agentic.model.PRESETS` entry and the other `model.*` keys override its fields. Command-line
overrides use dotted keys (`optimizer.lr=1e-4 parallel.tp=2 checkpoint.save=/ckpt`); values are
parsed as YAML and type-checked. Unknown keys and wrong types raise `ConfigError` naming the key,
before any process group starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from megatron_agentic.model import Qwen3MoEConfig, RopeScaling, get_preset
from megatron_agentic.parallel import ParallelConfig


class ConfigError(ValueError):
    """A recipe or override that does not fit the configuration schema."""


@dataclass
class DataConfig:
    """Where the tokens come from and how they are batched."""

    blend: str | None = None  # blend YAML (see megatron_agentic.data.blend)
    tokenizer_type: str = "HuggingFaceTokenizer"
    tokenizer_model: str | None = None
    seq_length: int = 4096
    micro_batch_size: int = 1
    global_batch_size: int = 8
    cache_dir: str | None = (
        None  # megatron-core's index caches (default: <checkpoint.save>/data_cache)
    )
    # Document masking of packed sequences (Megatron-LM's meanings; megatron_agentic.document_masking)
    reset_attention_mask: bool = False  # attend only within the document (EOD-delimited)
    reset_position_ids: bool = False  # position ids restart after each EOD
    eod_mask_loss: bool = False  # no loss where the input token is EOD


@dataclass
class OptimizerSection:
    """AdamW through megatron-core's optimizer (fp32 master weights under bf16)."""

    lr: float = 3e-4
    min_lr: float = 3e-5
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    bf16: bool = False


@dataclass
class ScheduleConfig:
    """Iterations and the learning-rate schedule (megatron-core's OptimizerParamScheduler)."""

    train_iters: int = 100
    warmup_iters: int = 10
    decay_style: str = "cosine"  # cosine | WSD | linear | constant
    wsd_decay_iters: int | None = None  # WSD: length of the final decay phase
    wsd_decay_style: str = "exponential"  # WSD decay shape: linear | cosine | exponential


@dataclass
class CheckpointConfig:
    """dist_checkpointing (torch_dist) save and load."""

    save: str | None = None
    load: str | None = None
    save_interval: int = 1000
    async_save: bool = False  # write in a background process while training goes on
    # fully_reshardable: loadable under any TP/PP/EP/DP (default); dp_reshardable: faster saves,
    # distributed-optimizer state reloadable only under the same model-parallel layout.
    optimizer_format: str = "fully_reshardable"
    load_optimizer: bool = True  # False: weights only, fresh optimizer and schedule (new stage)


@dataclass
class LoggingConfig:
    """Where the per-step figures go."""

    log_interval: int = 1
    tensorboard_dir: str | None = None
    wandb_project: str | None = None
    wandb_run_name: str | None = None
    gpu_peak_tflops: float = 989.0  # dense bf16 peak for MFU (H100 SXM)


@dataclass
class TrainingConfig:
    """Loop behaviour."""

    seed: int = 1234
    eval_interval: int = 0  # 0: no evaluation
    eval_iters: int = 2
    exit_interval: int | None = None  # stop (with a checkpoint) after this iteration
    recompute_granularity: str | None = None  # full | selective
    recompute_method: str | None = None  # uniform | block (full recompute)
    recompute_num_layers: int | None = None
    recompute_modules: list[str] | None = None  # selective, e.g. [core_attn]
    # Skip an update whose grad norm exceeds `spike_factor` x the running mean (0: never skip).
    spike_factor: float = 0.0


@dataclass
class TrainConfig:
    """Everything a training run needs."""

    model: Qwen3MoEConfig = field(default_factory=lambda: get_preset("tiny"))
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


def load_config(recipe: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """A recipe YAML (or the defaults) with dotted command-line overrides applied."""
    raw: dict = {}
    if recipe is not None:
        path = Path(recipe)
        if not path.is_file():
            raise ConfigError(f"{path}: recipe not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a recipe is a mapping of sections")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key.sub=value")
        try:
            parsed = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            parsed = value
        _set_dotted(raw, key.strip(), parsed)
    return _build(raw)


def _set_dotted(raw: dict, key: str, value) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def _build(raw: dict) -> TrainConfig:
    unknown = set(raw) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ConfigError(
            f"unknown section(s) {sorted(unknown)}; known: "
            f"{[f.name for f in dataclasses.fields(TrainConfig)]}"
        )
    sections = {}
    for section in dataclasses.fields(TrainConfig):
        values = raw.get(section.name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{section.name}: must be a mapping, got {values!r}")
        if section.name == "model":
            values = dict(values)
            preset = values.pop("preset", "tiny")
            try:
                base = get_preset(str(preset))
            except KeyError as error:
                raise ConfigError(f"model.preset: {error.args[0]}") from None
            sections["model"] = _fill(base, values, "model")
        else:
            sections[section.name] = _fill(section.default_factory(), values, section.name)
    return TrainConfig(**sections)


def _fill(instance, values: dict, where: str):
    """A copy of the dataclass `instance` with `values` type-checked and applied."""
    hints = typing.get_type_hints(type(instance))
    known = {f.name for f in dataclasses.fields(instance)}
    updates = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key {where}.{key}; known: {sorted(known)}")
        updates[key] = _check(hints[key], value, f"{where}.{key}")
    return dataclasses.replace(instance, **updates)


def _check(hint, value, key: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(option, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is RopeScaling:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _fill(RopeScaling(), value, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {hint}")


def to_dict(config: TrainConfig) -> dict:
    """The resolved configuration as plain data (for printing and saving with checkpoints)."""
    return dataclasses.asdict(config)


def dump_yaml(config) -> str:
    """YAML text of a config dataclass."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
