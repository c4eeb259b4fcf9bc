"""Unit tests (single process, seconds) of megatron_agentic.config: every config error is refused
before any process group starts - choice-field typos when the recipe is loaded (naming the file
and line or the override, and the allowed values), everything else in TrainConfig.validate() -
and the builders hand megatron-core the recipe's values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from megatron_agentic.config import (
    ConfigError,
    TrainConfig,
    load_config,
    load_dataclass,
    main,
)
from megatron_agentic.testing.train_fixtures import make_training_data

RECIPE = "examples/recipes/tiny_stage1.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("config")
    blend, tokenizer = make_training_data(root)
    return root, blend, tokenizer


@pytest.fixture
def base(data, tmp_path):
    """Overrides that make the tiny recipe valid on 2 ranks."""
    _, blend, tokenizer = data
    return [
        f"data.blend={blend}",
        f"data.tokenizer_model={tokenizer}",
        f"checkpoint.save={tmp_path / 'ckpt'}",
    ]


def _problem(base, *overrides, world_size=2) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(RECIPE, [*base, *overrides]).validate(world_size)
    return str(error.value)


def test_valid_recipe_passes_and_gives_the_data_parallel_size(base):
    assert load_config(RECIPE, base).validate(2) == 2
    assert load_config(RECIPE, [*base, "parallel.tp=2"]).validate(2) == 1


# --- choice fields: refused at load, with the allowed values ----------------------------------


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("checkpoint.optimizer_format=bogus", "fully_reshardable, dp_reshardable"),
        ("schedule.decay_style=cosinus", "cosine, WSD, linear, constant"),
        ("schedule.wsd_decay_style=cosin", "linear, cosine, exponential, minus_sqrt"),
        ("training.recompute_granularity=partial", "full, selective"),
        ("training.recompute_method=even", "uniform, block"),
        ("training.recompute_modules=[core_attn,attn]", "core_attn, moe_act"),
        ("data.tokenizer_type=GPT2Tokenizer", "HuggingFaceTokenizer, SentencePieceTokenizer"),
        ("parallel.moe_token_dispatcher=nccl", "alltoall, allgather, flex"),
    ],
)
def test_choice_typo_is_refused_at_load(override, allowed):
    key, _, value = override.partition("=")
    with pytest.raises(ConfigError) as error:
        load_config(RECIPE, [override])
    message = str(error.value)
    assert message.startswith(f"override {override!r}: {key}")
    assert "is not one of " + allowed in message


def test_choice_typo_in_a_recipe_names_its_file_and_line(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model:\n  preset: tiny\nschedule:\n  train_iters: 10\n  decay_style: cosinus\n"
    )
    with pytest.raises(ConfigError, match=rf"^{recipe}:5: schedule.decay_style: 'cosinus'"):
        load_config(recipe)


def test_unknown_key_and_wrong_type_name_the_key():
    with pytest.raises(ConfigError, match="unknown key schedule.decay; known: decay_style"):
        load_config(RECIPE, ["schedule.decay=cosine"])
    with pytest.raises(ConfigError, match="data.seq_length: expected an integer, got 'long'"):
        load_config(RECIPE, ["data.seq_length=long"])
    with pytest.raises(ConfigError, match="model.preset: unknown model preset 'huge'"):
        load_config(RECIPE, ["model.preset=huge"])


# --- validate(): every other check, before any process group -----------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("checkpoint.save_interval=0", "checkpoint.save_interval=0 must be >= 1"),
        ("logging.log_interval=0", "logging.log_interval=0 must be >= 1"),
        ("data.seq_length=0", "data.seq_length=0 must be >= 1"),
        ("data.global_batch_size=0", "data.global_batch_size=0 must be >= 1"),
        ("training.eval_iters=0", "training.eval_iters=0 must be >= 1 when evaluating"),
        ("schedule.warmup_iters=30", "schedule.warmup_iters=30 must be in 0..train_iters-1"),
        ("schedule.decay_style=WSD", "schedule.wsd_decay_iters=None must be in 1..train_iters"),
        ("data.global_batch_size=6", "data.global_batch_size=6 is not divisible by"),
        ("parallel.ep=3", "parallel: impossible parallel layout: num_experts=4 is not divisible"),
        ("data.seq_length=4096", "seq_length=4096 exceeds max_position_embeddings=1024"),
        ("optimizer.min_lr=1.0", "optimizer.min_lr=1.0 must be in 0..optimizer.lr"),
        ("checkpoint.keep_last_n=0", "checkpoint.keep_last_n=0 must be >= 1"),
        ("model.moe_router_load_balancing_type=aux", "model.moe_router_load_balancing_type: 'aux'"),
        ("training.recompute_granularity=full", "needs training.recompute_method"),
    ],
)
def test_value_that_would_fail_later_is_refused(base, override, message):
    assert message in _problem(base, override)


def test_evaluation_without_validation_data_is_refused(base, data, tmp_path):
    root, blend, _ = data
    no_valid = tmp_path / "blend.yaml"
    text = blend.read_text()
    no_valid.write_text(
        text.replace('"95,5,0"', '"100,0,0"').replace("prefix: ", f"prefix: {root}/")
    )
    message = _problem(base, f"data.blend={no_valid}", "training.eval_interval=5")
    assert "training.eval_interval=5 needs validation data" in message and "'100,0,0'" in message
    # Without evaluation the same blend is fine.
    load_config(RECIPE, [*base, f"data.blend={no_valid}", "training.eval_interval=0"]).validate(2)


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_save_directory_is_refused(base, tmp_path, where):
    if where == "under_a_file":
        (tmp_path / "file").write_text("")
        save = tmp_path / "file" / "ckpt"
        expected = "is not a directory"
    else:  # read-only even for root
        save = "/proc/ckpt"
        expected = "cannot write in /proc"
    message = _problem(base, f"checkpoint.save={save}")
    assert f"checkpoint.save: {save}: " in message and expected in message


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.blend=/nowhere/blend.yaml", "data.blend: /nowhere/blend.yaml: blend file not found"),
        ("data.tokenizer_model=/nowhere/tok", "data.tokenizer_model: /nowhere/tok does not exist"),
        ("checkpoint.load=/nowhere/ckpt", "checkpoint.load: /nowhere/ckpt is not a directory"),
    ],
)
def test_missing_paths_are_refused(base, override, message):
    assert message in _problem(base, override)


def test_load_directory_without_a_checkpoint_is_refused(base, tmp_path):
    (tmp_path / "empty").mkdir()
    message = _problem(base, f"checkpoint.load={tmp_path / 'empty'}")
    assert "holds no latest_checkpointed_iteration.txt" in message


def test_all_problems_are_listed_at_once(base):
    message = _problem(base, "checkpoint.save_interval=0", "logging.log_interval=0")
    assert "checkpoint.save_interval=0" in message and "logging.log_interval=0" in message


def test_checker_command_prints_one_line(base, capsys):
    assert main(["--config", RECIPE, "--world-size", "2", *base]) == 0
    assert main(["--config", RECIPE, "--world-size", "2", *base, "data.seq_length=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["config error: data.seq_length=0 must be >= 1"]


# --- builders ------------------------------------------------------------------------------


def test_builders_carry_the_recipe_values(base):
    import torch

    config = load_config(
        RECIPE,
        [
            *base,
            "optimizer.lr=0.01",
            "optimizer.min_lr=0.001",
            "optimizer.adam_beta2=0.9",
            "schedule.train_iters=10",
            "schedule.warmup_iters=2",
            "schedule.decay_style=linear",
            "training.recompute_granularity=selective",
        ],
    )
    tc = config.transformer_config()
    assert (tc.num_layers, tc.num_moe_experts, tc.recompute_granularity) == (2, 4, "selective")
    oc = config.optimizer_config()
    assert (oc.lr, oc.min_lr, oc.adam_beta2, oc.weight_decay) == (0.01, 0.001, 0.9, 0.1)
    assert oc.use_distributed_optimizer and oc.params_dtype == torch.float32
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    scheduler = config.build_scheduler(optimizer)
    lrs = []
    for _ in range(10):
        scheduler.step(increment=config.data.global_batch_size)
        lrs.append(round(optimizer.param_groups[0]["lr"], 6))
    assert lrs[1] == 0.01  # end of warmup (2 iterations)
    assert lrs[-1] == 0.001  # linear decay to min_lr at train_iters
    assert lrs[0] < lrs[1] and lrs[1:] == sorted(lrs[1:], reverse=True)


# --- the loader is generic -----------------------------------------------------------------


@dataclass
class _Backend:
    kind: Literal["vllm", "openai"] = "vllm"
    url: str | None = None


@dataclass
class _Pipeline:
    """A config of another tool (shaped like the data-synthesis one)."""

    workers: int = 1
    backend: _Backend = field(default_factory=_Backend)
    stages: list[str] = field(default_factory=list)


def test_loader_is_generic_over_dataclasses(tmp_path):
    recipe = tmp_path / "synth.yaml"
    recipe.write_text("workers: 4\nbackend:\n  kind: openai\nstages: [plan, act]\n")
    config = load_dataclass(_Pipeline, recipe, ["backend.url=http://h:8000", "workers=8"])
    assert config == _Pipeline(8, _Backend("openai", "http://h:8000"), ["plan", "act"])
    assert dataclasses.asdict(load_dataclass(_Pipeline)) == dataclasses.asdict(_Pipeline())
    with pytest.raises(ConfigError, match=rf"^{recipe}:3: backend.kind: 'vllm2'"):
        recipe.write_text("workers: 4\nbackend:\n  kind: vllm2\n")
        load_dataclass(_Pipeline, recipe)


def test_default_config_type():
    assert isinstance(load_config(None), TrainConfig)


def test_synthesis_config_uses_the_same_loader_and_override_syntax(tmp_path):
    from data_synthesis.config import load_pipeline_config

    config = load_pipeline_config(None, ["questions.per_entity=1", "backend.type=template"])
    assert config.questions.per_entity == 1 and config.backend.type == "heuristic"
    recipe = tmp_path / "synth.yaml"
    recipe.write_text("seed: 3\nbackend:\n  type: vlm\n")
    with pytest.raises(ConfigError, match=r"synth.yaml:3: backend.type: 'vlm' is not one of"):
        load_pipeline_config(recipe)
    with pytest.raises(ConfigError, match=r"override 'engine.executor=k8s'"):
        load_pipeline_config(None, ["engine.executor=k8s"])


def test_the_cpu_default_yaml_is_what_runs_without_a_config():
    """docs/data_synthesis.md: without --config the pipeline runs configs/cpu_default.yaml. The
    YAML spells out defaults the dataclasses hold, so the two must not drift apart."""
    from pathlib import Path

    from data_synthesis.config import load_pipeline_config
    from data_synthesis.environment.executor import EnvironmentConfig

    path = Path(__file__).resolve().parents[2] / "data_synthesis/configs/cpu_default.yaml"
    spelled, default = load_pipeline_config(path), load_pipeline_config(None)
    environments = [EnvironmentConfig.from_dict(c.environment) for c in (spelled, default)]
    assert environments[0] == environments[1]
    spelled.environment = default.environment = {}
    assert spelled == default


@pytest.mark.parametrize(
    ("name", "scope"), [("cpu_default.yaml", (16, 2)), ("vllm_cluster.yaml", (8192, 4))]
)
def test_shipped_synthesis_configs_load_and_their_environment_validates(name, scope):
    """The configs under data_synthesis/configs load, and their `environment:` sections pass
    EnvironmentConfig's checks. A question's searches cover 2 shards of 16 MiB on one machine
    (the defaults) and 4 of 8 GiB on the cluster."""
    from pathlib import Path

    from data_synthesis.config import load_pipeline_config
    from data_synthesis.environment.executor import EnvironmentConfig

    path = Path(__file__).resolve().parents[2] / "data_synthesis/configs" / name
    environment = EnvironmentConfig.from_dict(load_pipeline_config(path).environment)
    assert (environment.index_shard_mb, environment.search_shards) == scope
