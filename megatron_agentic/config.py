"""The training configuration: one typed dataclass tree, one loader, one validate().

A recipe is a YAML file with one mapping per section of `TrainConfig`; `model.preset` picks a
`megatron_agentic.model.PRESETS` entry and the other `model.*` keys override its fields. Command-line
overrides use dotted keys (`optimizer.lr=1e-4 parallel.tp=2 checkpoint.save=/ckpt`); values are
parsed as YAML.

Three layers, each in one place:

- Loading (`config_loader.load_dataclass`, generic over any dataclass tree - the data-synthesis config uses
  it as it is): unknown keys, wrong types and choice fields outside their `Literal` values are
  refused at load, naming the recipe file and line (or the override) and the allowed values.
- Checking (`TrainConfig.validate`): every check that needs more than one field or the
  filesystem - the parallel layout, batch sizes, schedule, data paths and split, checkpoint and
  log directories. It runs before any process group starts: in `megatron_agentic.train.main`, and
  in the launch scripts before torchrun starts workers (`python -m megatron_agentic.config`).
- Building: `TrainConfig.transformer_config`, `.optimizer_config` and `.build_scheduler` turn
  the sections into megatron-core objects, so no caller copies fields by hand.

Section classes end in `Section` (one YAML mapping each); `TrainConfig` is the whole run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from megatron_agentic.config_loader import (  # noqa: F401 - the loader is part of this API
    ConfigError,
    _located,
    _not_one_of,
    apply_overrides,
    dump_yaml,
    fill,
    load_dataclass,
    read_recipe,
    to_dict,
)
from megatron_agentic.model import Qwen3MoEConfig, get_preset
from megatron_agentic.parallel import LayoutError, ParallelConfig, validate_layout

TokenizerType = Literal["HuggingFaceTokenizer", "SentencePieceTokenizer", "TikTokenizer"]
DecayStyle = Literal["cosine", "WSD", "linear", "constant", "inverse-square-root"]
WSDDecayStyle = Literal["linear", "cosine", "exponential", "minus_sqrt"]
OptimizerFormat = Literal["fully_reshardable", "dp_reshardable", "fully_sharded_model_space"]
RecomputeGranularity = Literal["full", "selective"]
RecomputeMethod = Literal["uniform", "block"]
RecomputeModule = Literal[
    "core_attn", "moe_act", "layernorm", "mla_up_proj", "mlp", "moe", "shared_experts"
]
# Choice fields of the model section (Qwen3MoEConfig types them as str): checked in validate().
LOAD_BALANCING_TYPES = ("aux_loss", "seq_aux_loss", "global_aux_loss", "none")
ROPE_SCALING_TYPES = ("yarn",)


@dataclass
class DataSection:
    """Where the tokens come from and how they are batched."""

    blend: str | None = None  # blend YAML (see megatron_agentic.data.blend)
    tokenizer_type: TokenizerType = "HuggingFaceTokenizer"
    tokenizer_model: str | None = None
    seq_length: int = 4096
    micro_batch_size: int = 1
    global_batch_size: int = 8
    cache_dir: str | None = None  # megatron-core's index caches (default: <save>/data_cache)
    # Document masking of packed sequences (Megatron-LM's meanings; megatron_agentic.document_masking)
    reset_attention_mask: bool = False  # attend only within the document (EOD-delimited)
    reset_position_ids: bool = False  # position ids restart after each EOD
    eod_mask_loss: bool = False  # no loss where the input token is EOD


@dataclass
class OptimizerSection:
    """AdamW through megatron-core's optimizer (fp32 master weights under bf16). The field names
    are megatron-core OptimizerConfig's, so `TrainConfig.optimizer_config` passes them through."""

    lr: float = 3e-4
    min_lr: float = 3e-5
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    bf16: bool = False


@dataclass
class ScheduleSection:
    """Iterations and the learning-rate schedule (megatron-core's OptimizerParamScheduler)."""

    train_iters: int = 100
    warmup_iters: int = 10
    decay_style: DecayStyle = "cosine"
    wsd_decay_iters: int | None = None  # WSD: length of the final decay phase
    wsd_decay_style: WSDDecayStyle = "exponential"  # WSD: shape of the final decay


@dataclass
class CheckpointSection:
    """dist_checkpointing (torch_dist) save and load."""

    save: str | None = None
    load: str | None = None
    save_interval: int = 1000
    async_save: bool = False  # write in a background process while training goes on
    # fully_reshardable: loadable under any TP/PP/EP/DP (default); dp_reshardable: faster saves,
    # distributed-optimizer state reloadable only under the same model-parallel layout.
    optimizer_format: OptimizerFormat = "fully_reshardable"
    load_optimizer: bool = True  # False: weights only, fresh optimizer and schedule (new stage)
    keep_last_n: int | None = None  # keep only the newest N checkpoints (None: all)
    keep_every_m: int | None = None  # ... plus every iteration divisible by M, forever
    # On a corrupt or truncated checkpoint, resume from the newest intact iteration (else fail).
    fallback_to_intact: bool = False


@dataclass
class LoggingSection:
    """Where the per-step figures go."""

    log_interval: int = 1
    tensorboard_dir: str | None = None
    wandb_project: str | None = None
    wandb_run_name: str | None = None
    # Dense bf16 peak per GPU for MFU; None: looked up from the GPU's name (MFU printed only when
    # a peak is known).
    gpu_peak_tflops: float | None = None


@dataclass
class TrainingSection:
    """Loop behaviour (the recipe's `training:` mapping)."""

    seed: int = 1234
    eval_interval: int = 0  # 0: no evaluation
    eval_iters: int = 2
    exit_interval: int | None = None  # stop (with a checkpoint) after this iteration
    recompute_granularity: RecomputeGranularity | None = None
    recompute_method: RecomputeMethod | None = None  # full recompute only
    recompute_num_layers: int | None = None
    recompute_modules: list[RecomputeModule] | None = None  # selective, e.g. [core_attn]
    # Skip an update whose grad norm exceeds `spike_factor` x the running mean (0: never skip).
    spike_factor: float = 0.0


@dataclass
class TrainConfig:
    """Everything a training run needs."""

    model: Qwen3MoEConfig = field(default_factory=lambda: get_preset("tiny"))
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    data: DataSection = field(default_factory=DataSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    training: TrainingSection = field(default_factory=TrainingSection)

    # --- checking ---------------------------------------------------------------------------

    def validate(self, world_size: int | None = None) -> int:
        """Raise ConfigError listing every problem (each naming its key); returns the DP size.

        `world_size` defaults to torchrun's WORLD_SIZE (1 without torchrun). Touches nothing but
        the filesystem: safe before any process group exists."""
        if world_size is None:
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
        problems: list[str] = []
        for check in (
            _check_numbers,
            _check_choices,
            _check_schedule,
            _check_data,
            _check_paths,
        ):
            problems += check(self)
        dp = 0
        if self.data.seq_length >= 1 and world_size >= 1:
            try:
                dp = validate_layout(self.model, self.parallel, world_size, self.data.seq_length)
            except LayoutError as error:
                problems.append(f"parallel: {error}")
        if dp:
            per_step = self.data.micro_batch_size * dp
            if self.data.global_batch_size % per_step:
                problems.append(
                    f"data.global_batch_size={self.data.global_batch_size} is not divisible by "
                    f"micro_batch_size*dp={self.data.micro_batch_size}*{dp}"
                )
        if problems:
            raise ConfigError("; ".join(problems))
        return dp

    # --- building megatron-core objects -------------------------------------------------------

    def transformer_config(self):
        """megatron-core's TransformerConfig for this architecture, layout, precision and
        recompute setting."""
        from megatron_agentic.model import transformer_config

        loop = self.training
        return transformer_config(
            self.model,
            self.parallel,
            bf16=self.optimizer.bf16,
            recompute_granularity=loop.recompute_granularity,
            recompute_method=loop.recompute_method,
            recompute_num_layers=loop.recompute_num_layers,
            recompute_modules=loop.recompute_modules,
        )

    def optimizer_config(self, params_dtype=None):
        """megatron-core's OptimizerConfig (Adam; the section's fields carry its names)."""
        import torch
        from megatron.core.optimizer import OptimizerConfig

        if params_dtype is None:
            params_dtype = torch.bfloat16 if self.optimizer.bf16 else torch.float32
        return OptimizerConfig(
            optimizer="adam",
            params_dtype=params_dtype,
            use_distributed_optimizer=self.parallel.use_distributed_optimizer,
            **dataclasses.asdict(self.optimizer),
        )

    def build_scheduler(self, optimizer):
        """megatron-core's OptimizerParamScheduler; it counts samples, the schedule iterations."""
        from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

        opt, sched = self.optimizer, self.schedule
        samples = self.data.global_batch_size
        return OptimizerParamScheduler(
            optimizer,
            init_lr=0.0,
            max_lr=opt.lr,
            min_lr=opt.min_lr,
            lr_warmup_steps=sched.warmup_iters * samples,
            lr_decay_steps=sched.train_iters * samples,
            lr_decay_style=sched.decay_style,
            start_wd=opt.weight_decay,
            end_wd=opt.weight_decay,
            wd_incr_steps=sched.train_iters * samples,
            wd_incr_style="constant",
            wsd_decay_steps=(sched.wsd_decay_iters or 0) * samples,
            lr_wsd_decay_style=sched.wsd_decay_style,
        )


# --- the checks validate() runs (each returns "key: problem" lines) ---------------------------


def _check_numbers(config: TrainConfig) -> list[str]:
    """Sizes and intervals that divide, index or count: a 0 there fails hours in (or never)."""
    at_least_one = {
        "data.seq_length": config.data.seq_length,
        "data.micro_batch_size": config.data.micro_batch_size,
        "data.global_batch_size": config.data.global_batch_size,
        "schedule.train_iters": config.schedule.train_iters,
        "checkpoint.save_interval": config.checkpoint.save_interval,
        "logging.log_interval": config.logging.log_interval,
        "model.vocab_size": config.model.vocab_size,
        "model.num_layers": config.model.num_layers,
    }
    problems = [f"{key}={value} must be >= 1" for key, value in at_least_one.items() if value < 1]
    loop = config.training
    if loop.eval_interval < 0:
        problems.append(f"training.eval_interval={loop.eval_interval} must be >= 0 (0: no eval)")
    if loop.eval_interval and loop.eval_iters < 1:
        problems.append(
            f"training.eval_iters={loop.eval_iters} must be >= 1 when evaluating "
            f"(training.eval_interval={loop.eval_interval}; set it to 0 to turn evaluation off)"
        )
    if loop.exit_interval is not None and loop.exit_interval < 1:
        problems.append(f"training.exit_interval={loop.exit_interval} must be >= 1 (or unset)")
    if loop.spike_factor < 0:
        problems.append(f"training.spike_factor={loop.spike_factor} must be >= 0 (0: off)")
    opt = config.optimizer
    if opt.lr < 0 or not 0 <= opt.min_lr <= opt.lr:
        problems.append(f"optimizer.min_lr={opt.min_lr} must be in 0..optimizer.lr={opt.lr}")
    for key in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(opt, key) < 1:
            problems.append(f"optimizer.{key}={getattr(opt, key)} must be in [0, 1)")
    if opt.clip_grad < 0:
        problems.append(f"optimizer.clip_grad={opt.clip_grad} must be >= 0 (0: no clipping)")
    for key in ("keep_last_n", "keep_every_m"):
        value = getattr(config.checkpoint, key)
        if value is not None and value < 1:
            problems.append(f"checkpoint.{key}={value} must be >= 1 (or unset: keep all)")
    if config.logging.gpu_peak_tflops is not None and config.logging.gpu_peak_tflops <= 0:
        problems.append(f"logging.gpu_peak_tflops={config.logging.gpu_peak_tflops} must be > 0")
    return problems


def _check_choices(config: TrainConfig) -> list[str]:
    """Choice fields typed `str` in the model section; the others are Literal (checked at load)."""
    problems = []
    balancing = config.model.moe_router_load_balancing_type
    if balancing not in LOAD_BALANCING_TYPES:
        problems.append(
            _not_one_of("model.moe_router_load_balancing_type", balancing, LOAD_BALANCING_TYPES)
        )
    scaling = config.model.rope_scaling
    if scaling is not None and scaling.type not in ROPE_SCALING_TYPES:
        problems.append(_not_one_of("model.rope_scaling.type", scaling.type, ROPE_SCALING_TYPES))
    loop = config.training
    if loop.recompute_method is not None and loop.recompute_granularity != "full":
        problems.append(
            f"training.recompute_method={loop.recompute_method} needs "
            f"training.recompute_granularity=full (got {loop.recompute_granularity})"
        )
    if loop.recompute_granularity == "full" and (
        loop.recompute_method is None or loop.recompute_num_layers is None
    ):
        problems.append(
            "training.recompute_granularity=full needs training.recompute_method and "
            "training.recompute_num_layers"
        )
    return problems


def _check_schedule(config: TrainConfig) -> list[str]:
    sched = config.schedule
    problems = []
    if not 0 <= sched.warmup_iters < max(sched.train_iters, 1):
        problems.append(
            f"schedule.warmup_iters={sched.warmup_iters} must be in 0..train_iters-1 "
            f"(schedule.train_iters={sched.train_iters})"
        )
    room = sched.train_iters - sched.warmup_iters
    if sched.decay_style == "WSD" and not 0 < (sched.wsd_decay_iters or 0) <= room:
        problems.append(
            f"schedule.wsd_decay_iters={sched.wsd_decay_iters} must be in "
            f"1..train_iters-warmup_iters={room} with decay_style=WSD"
        )
    return problems


def _check_data(config: TrainConfig) -> list[str]:
    """The blend (its datasets must exist) and its split against evaluation."""
    from megatron_agentic.data.blend import BlendError, load_blend

    data = config.data
    problems = []
    if not data.tokenizer_model:
        problems.append("data.tokenizer_model: the tokenizer is required")
    elif not Path(data.tokenizer_model).exists():
        problems.append(f"data.tokenizer_model: {data.tokenizer_model} does not exist")
    if not data.blend:
        return problems + ["data.blend: a blend YAML is required (see docs/data.md)"]
    try:
        blend = load_blend(data.blend)
    except BlendError as error:
        return problems + [f"data.blend: {error}"]
    valid_share = float(blend.split.split(",")[1])
    if config.training.eval_interval and valid_share == 0:
        problems.append(
            f"training.eval_interval={config.training.eval_interval} needs validation data, but "
            f"the blend's split {blend.split!r} ({data.blend}) gives it none: give the middle "
            "number a share, or set training.eval_interval=0"
        )
    return problems


def _check_paths(config: TrainConfig) -> list[str]:
    """Directories the run writes must be writable; what it loads must exist."""
    problems = []
    ckpt = config.checkpoint
    for key, path in (
        ("checkpoint.save", ckpt.save),
        ("data.cache_dir", config.data.cache_dir),
        ("logging.tensorboard_dir", config.logging.tensorboard_dir),
    ):
        if path:
            problem = _unwritable(Path(path))
            if problem:
                problems.append(f"{key}: {problem}")
    resuming = ckpt.save and (Path(ckpt.save) / "latest_checkpointed_iteration.txt").is_file()
    if resuming:  # checkpoint.load is ignored once checkpoint.save holds a checkpoint
        pass
    elif ckpt.load and not Path(ckpt.load).is_dir():
        problems.append(f"checkpoint.load: {ckpt.load} is not a directory")
    elif ckpt.load and not (Path(ckpt.load) / "latest_checkpointed_iteration.txt").is_file():
        problems.append(
            f"checkpoint.load: {ckpt.load} holds no latest_checkpointed_iteration.txt "
            "(not a checkpoint directory of ours or an imported model)"
        )
    return problems


def _unwritable(path: Path) -> str | None:
    """Why `path` (a directory, made on first use) cannot be written, or None if it can."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return f"{path}: {existing} is not a directory"
    try:  # os.access says yes to root on a read-only mount; a real write does not
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"{path}: cannot write in {existing} ({error.strerror or error})"
    return None


def load_config(recipe: str | Path | None, overrides=()) -> TrainConfig:
    """A training recipe YAML (or the defaults) with dotted overrides applied; `model.preset`
    (default tiny) gives the model section's defaults. Not yet validated: call .validate()."""
    raw, lines = read_recipe(recipe)
    sources = apply_overrides(raw, overrides)
    model = raw.get("model") or {}
    try:
        if not isinstance(model, dict):
            raise ConfigError(f"model: must be a mapping, got {model!r}", "model")
        model = dict(model)
        preset = str(model.pop("preset", "tiny"))
        try:
            base = TrainConfig(model=get_preset(preset))
        except KeyError as error:
            raise ConfigError(f"model.preset: {error.args[0]}", "model.preset") from None
        return fill(base, {**raw, "model": model})
    except ConfigError as error:
        raise _located(error, recipe, lines, sources) from None


def main(argv: list[str] | None = None) -> int:
    """`python -m megatron_agentic.config --config R [key=value ...] [--world-size N]`: load and
    validate a training config (what the launch scripts run before torchrun); one error line and
    exit status 2 if it is wrong, the resolved YAML with --print."""
    parser = argparse.ArgumentParser(description="check a training recipe and its overrides")
    parser.add_argument("--config", help="recipe YAML (examples/recipes/)")
    parser.add_argument(
        "--world-size", type=int, default=None, help="processes in all [WORLD_SIZE or 1]"
    )
    parser.add_argument("--print", action="store_true", help="print the resolved config")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        config.validate(args.world_size)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    if args.print:
        print(dump_yaml(config), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
