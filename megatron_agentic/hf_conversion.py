"""Hugging Face Qwen3-MoE <-> megatron-core checkpoints, tensor by tensor.

The map is written against megatron-core's own sharding metadata: every tensor of a GPTModel's
sharded state dict has a global key (e.g. `decoder.layers.self_attention.linear_qkv.weight`),
a global shape with the layer (and expert) axes prepended, and the offset of this rank's slice.
So one rule per global key serves every TP/PP/EP layout, and the sequential-expert (local spec)
and grouped-GEMM (TE spec) layouts alike, which share these keys.

Import (`import_hf_checkpoint`, one process per rank): build this rank's model without
initialising it, fill each local tensor from the HF tensors it needs (read lazily with
safetensors, one at a time), and save a `release` dist checkpoint. Export (`export_hf_checkpoint`,
two processes, rank 0 writing): read the dist checkpoint one layer at a time and write HF
safetensors shards.
Every HF tensor must be used and every Megatron tensor filled; anything left over is an error
naming it. Outputs are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections import OrderedDict
from pathlib import Path

import torch
import yaml

from megatron_agentic.model import Qwen3MoEConfig, RopeScaling

HF_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "chat_template.jinja",
)


class ConversionError(ValueError):
    """Input that cannot be converted, naming the file or tensor at fault."""


# --- configs ----------------------------------------------------------------------------------


def model_config_from_hf(config: dict, source: str = "config.json") -> Qwen3MoEConfig:
    """Our architecture config from a Qwen3-MoE config.json."""
    if config.get("model_type") != "qwen3_moe":
        raise ConversionError(f"{source}: model_type {config.get('model_type')!r} is not qwen3_moe")
    if config.get("decoder_sparse_step", 1) != 1 or config.get("mlp_only_layers"):
        raise ConversionError(
            f"{source}: dense layers (mlp_only_layers/decoder_sparse_step) "
            "are not supported: every Qwen3-MoE layer must be MoE"
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    scaling = None
    if rope.get("rope_type", "default") == "yarn":
        scaling = RopeScaling(
            factor=float(rope["factor"]),
            original_max_position_embeddings=int(rope["original_max_position_embeddings"]),
        )
    try:
        return Qwen3MoEConfig(
            num_layers=config["num_hidden_layers"],
            hidden_size=config["hidden_size"],
            num_attention_heads=config["num_attention_heads"],
            num_query_groups=config["num_key_value_heads"],
            head_dim=config.get("head_dim")
            or config["hidden_size"] // config["num_attention_heads"],
            ffn_hidden_size=config["intermediate_size"],
            num_experts=config.get("num_experts", config.get("num_local_experts")),
            moe_router_topk=config["num_experts_per_tok"],
            moe_ffn_hidden_size=config["moe_intermediate_size"],
            norm_topk_prob=config.get("norm_topk_prob", False),
            vocab_size=config["vocab_size"],
            max_position_embeddings=config["max_position_embeddings"],
            rotary_base=float(rope_theta),
            rope_scaling=scaling,
            norm_epsilon=config["rms_norm_eps"],
            untie_embeddings_and_output_weights=not config.get("tie_word_embeddings", False),
            moe_aux_loss_coeff=config.get("router_aux_loss_coef", 1e-3),
        )
    except KeyError as error:
        raise ConversionError(f"{source}: missing key {error.args[0]!r}") from None


def hf_config_from_model(model: Qwen3MoEConfig, dtype: str) -> dict:
    """A transformers Qwen3MoeForCausalLM config.json for the architecture."""
    rope = {"rope_theta": model.rotary_base, "rope_type": "default"}
    if model.rope_scaling is not None:
        rope = {
            "rope_theta": model.rotary_base,
            "rope_type": "yarn",
            "factor": model.rope_scaling.factor,
            "original_max_position_embeddings": model.rope_scaling.original_max_position_embeddings,
        }
    return {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "num_hidden_layers": model.num_layers,
        "hidden_size": model.hidden_size,
        "num_attention_heads": model.num_attention_heads,
        "num_key_value_heads": model.num_query_groups,
        "head_dim": model.head_dim,
        "intermediate_size": model.ffn_hidden_size,
        "num_experts": model.num_experts,
        "num_experts_per_tok": model.moe_router_topk,
        "moe_intermediate_size": model.moe_ffn_hidden_size,
        "norm_topk_prob": model.norm_topk_prob,
        "vocab_size": model.vocab_size,
        "max_position_embeddings": model.max_position_embeddings,
        "rope_parameters": rope,
        "rms_norm_eps": model.norm_epsilon,
        "tie_word_embeddings": not model.untie_embeddings_and_output_weights,
        "router_aux_loss_coef": model.moe_aux_loss_coeff,
        "hidden_act": "silu",
        "attention_bias": False,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "initializer_range": model.init_method_std,
        "dtype": dtype,
    }


# --- reading HF safetensors lazily ------------------------------------------------------------


class HFWeights:
    """The tensors of an HF checkpoint directory, read lazily, with a record of what was read.

    Shards are memory-mapped on demand and at most `open_shards` at a time: the pages read stay
    in the process's RSS while a shard is open."""

    def __init__(self, directory: str | Path, open_shards: int = 2):
        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
        elif (self.directory / "model.safetensors").is_file():
            weight_map = None
        else:
            raise ConversionError(f"{self.directory}: no model.safetensors(.index.json)")
        self._open: OrderedDict[str, object] = OrderedDict()
        self._open_shards = open_shards
        self.location: dict[str, str] = {}
        files = sorted(set(weight_map.values())) if weight_map else ["model.safetensors"]
        for name in files:
            if not (self.directory / name).is_file():
                raise ConversionError(
                    f"{self.directory / name}: shard listed in the index is missing"
                )
            for key in self._shard(name).keys():
                self.location[key] = name
        if weight_map and set(weight_map) != set(self.location):
            missing = sorted(set(weight_map) - set(self.location))[:5]
            raise ConversionError(f"{index}: tensors listed but not in their shard: {missing}")
        self.used: set[str] = set()

    def _shard(self, name: str):
        from safetensors import safe_open

        if name in self._open:
            self._open.move_to_end(name)
            return self._open[name]
        path = self.directory / name
        try:
            handle = safe_open(str(path), framework="pt")
        except Exception as error:  # noqa: BLE001 - safetensors raises several kinds
            raise ConversionError(f"{path}: unreadable safetensors file ({error})") from None
        self._open[name] = handle
        if len(self._open) > self._open_shards:
            self._open.popitem(last=False)  # unmapped once dropped
        return handle

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if name not in self.location:
            raise ConversionError(f"{self.directory}: tensor {name} is missing")
        try:
            tensor = self._shard(self.location[name]).get_tensor(name)
        except Exception as error:  # noqa: BLE001
            raise ConversionError(
                f"{self.directory / self.location[name]}: cannot read {name} ({error})"
            ) from None
        if tuple(tensor.shape) != tuple(shape):
            raise ConversionError(
                f"{name}: shape {tuple(tensor.shape)} does not match the config "
                f"(expected {tuple(shape)})"
            )
        self.used.add(name)
        return tensor


# --- the name and layout map ------------------------------------------------------------------

LAYER = "decoder.layers."
EXPERTS = "decoder.layers.mlp.experts.experts."


def _layer(i: int) -> str:
    return f"model.layers.{i}."


def megatron_from_hf(
    key: str, layer: int | None, expert: int | None, hf: HFWeights, m: Qwen3MoEConfig
) -> torch.Tensor:
    """The full Megatron tensor `key` (of one layer and expert) built from HF tensors."""
    h, d = m.hidden_size, m.head_dim
    if key == "embedding.word_embeddings.weight":
        return hf.get("model.embed_tokens.weight", (m.vocab_size, h))
    if key == "output_layer.weight":
        return hf.get("lm_head.weight", (m.vocab_size, h))
    if key == "decoder.final_layernorm.weight":
        return hf.get("model.norm.weight", (h,))
    p = _layer(layer)
    if key == LAYER + "self_attention.linear_qkv.layer_norm_weight":
        return hf.get(p + "input_layernorm.weight", (h,))
    if key == LAYER + "self_attention.linear_qkv.weight":
        heads, groups = m.num_attention_heads, m.num_query_groups
        q = hf.get(p + "self_attn.q_proj.weight", (heads * d, h))
        k = hf.get(p + "self_attn.k_proj.weight", (groups * d, h))
        v = hf.get(p + "self_attn.v_proj.weight", (groups * d, h))
        # Megatron interleaves by query group: [q heads of group g, k_g, v_g] for each g.
        q = q.view(groups, heads // groups * d, h)
        return torch.cat([q, k.view(groups, d, h), v.view(groups, d, h)], dim=1).view(-1, h)
    if key == LAYER + "self_attention.linear_proj.weight":
        return hf.get(p + "self_attn.o_proj.weight", (h, m.num_attention_heads * d))
    if key == LAYER + "self_attention.q_layernorm.weight":
        return hf.get(p + "self_attn.q_norm.weight", (d,))
    if key == LAYER + "self_attention.k_layernorm.weight":
        return hf.get(p + "self_attn.k_norm.weight", (d,))
    if key == LAYER + "mlp.linear_fc1.layer_norm_weight":
        return hf.get(p + "post_attention_layernorm.weight", (h,))
    if key == LAYER + "mlp.router.weight":
        return hf.get(p + "mlp.gate.weight", (m.num_experts, h))
    e, i = f"{p}mlp.experts.{expert}.", m.moe_ffn_hidden_size
    if key == EXPERTS + "linear_fc1.weight":
        return torch.cat(
            [hf.get(e + "gate_proj.weight", (i, h)), hf.get(e + "up_proj.weight", (i, h))]
        )
    if key == EXPERTS + "linear_fc2.weight":
        return hf.get(e + "down_proj.weight", (h, i))
    raise ConversionError(f"no HF source for Megatron tensor {key}")


def hf_from_megatron(
    key: str, layer: int | None, expert: int | None, tensor: torch.Tensor, m: Qwen3MoEConfig
) -> dict[str, torch.Tensor]:
    """The HF tensors held in the Megatron tensor `key` (of one layer and expert)."""
    simple = {
        "embedding.word_embeddings.weight": "model.embed_tokens.weight",
        "output_layer.weight": "lm_head.weight",
        "decoder.final_layernorm.weight": "model.norm.weight",
    }
    if key in simple:
        return {simple[key]: tensor}
    p = _layer(layer)
    per_layer = {
        LAYER + "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
        LAYER + "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
        LAYER + "self_attention.q_layernorm.weight": "self_attn.q_norm.weight",
        LAYER + "self_attention.k_layernorm.weight": "self_attn.k_norm.weight",
        LAYER + "mlp.linear_fc1.layer_norm_weight": "post_attention_layernorm.weight",
        LAYER + "mlp.router.weight": "mlp.gate.weight",
    }
    if key in per_layer:
        return {p + per_layer[key]: tensor}
    if key == LAYER + "self_attention.linear_qkv.weight":
        groups, d, h = m.num_query_groups, m.head_dim, m.hidden_size
        per_group = tensor.view(groups, -1, h)
        q_rows = m.num_attention_heads // groups * d
        q, k, v = torch.split(per_group, [q_rows, d, d], dim=1)
        return {
            p + "self_attn.q_proj.weight": q.reshape(-1, h),
            p + "self_attn.k_proj.weight": k.reshape(-1, h),
            p + "self_attn.v_proj.weight": v.reshape(-1, h),
        }
    e = f"{p}mlp.experts.{expert}."
    if key == EXPERTS + "linear_fc1.weight":
        gate, up = torch.chunk(tensor, 2, dim=0)
        return {e + "gate_proj.weight": gate, e + "up_proj.weight": up}
    if key == EXPERTS + "linear_fc2.weight":
        return {e + "down_proj.weight": tensor}
    raise ConversionError(f"no HF destination for Megatron tensor {key}")


# --- import -----------------------------------------------------------------------------------


def _sharded_tensors(state: dict) -> list:
    """The ShardedTensors of a sharded state dict whose factories were applied (so the fused
    SwiGLU fc1 appears as its gate and up halves); their `.data` are views of the parameters."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    return [value for value in nested_values(state) if isinstance(value, ShardedTensor)]


def fill_from_hf(state: dict, hf: HFWeights, model_cfg: Qwen3MoEConfig) -> int:
    """Copy into every local tensor its slice of the HF weights; returns the count filled."""
    filled = 0
    cache: dict[tuple, torch.Tensor] = {}
    for sharded in _sharded_tensors(state):
        prepend = sharded.prepend_axis_num
        layer = sharded.global_offset[0] if prepend >= 1 else None
        expert = sharded.global_offset[1] if prepend >= 2 else None
        source_key = (sharded.key, layer, expert)
        if source_key not in cache:
            cache.clear()  # one source tensor at a time (plus the fc1 halves sharing it)
            cache[source_key] = megatron_from_hf(sharded.key, layer, expert, hf, model_cfg)
        full = cache[source_key]
        expected = tuple(sharded.global_shape[prepend:])
        if tuple(full.shape) != expected:
            raise ConversionError(
                f"{sharded.key}: built shape {tuple(full.shape)}, the model expects {expected}"
            )
        index = tuple(
            slice(o, o + n) for o, n in zip(sharded.global_offset[prepend:], sharded.local_shape)
        )
        with torch.no_grad():
            sharded.data.copy_(full[index])
        filled += 1
    return filled


def _detach_views(state: dict) -> None:
    """Give each tensor that views part of a parameter (the fused fc1's gate and up halves) its
    own uninitialised storage and drop the parameter's, before anything is written to it.
    dist_checkpointing would otherwise clone every such view at once before writing: a second
    copy of two thirds of the weights."""
    by_storage: dict[int, list] = {}
    for sharded in _sharded_tensors(state):
        by_storage.setdefault(sharded.data.untyped_storage().data_ptr(), []).append(sharded)
    for group in by_storage.values():
        storage = group[0].data.untyped_storage()
        if all(sharded.data.nbytes == storage.nbytes() for sharded in group):
            continue
        with torch.no_grad():
            for sharded in group:
                sharded.data = torch.empty_like(sharded.data, memory_format=torch.contiguous_format)
            storage.resize_(0)


def import_rank(hf_dir: str, output: str, parallel_cfg, dtype: str) -> list[str]:
    """One rank of the import: returns the HF tensor names this rank used."""
    from megatron.core import dist_checkpointing, parallel_state
    from megatron.core.dist_checkpointing.mapping import apply_factories

    from megatron_agentic import checkpointing, parallel
    from megatron_agentic.model import build_model, transformer_config

    model_cfg = model_config_from_hf(
        json.loads((Path(hf_dir) / "config.json").read_text()), f"{hf_dir}/config.json"
    )
    parallel.initialize(parallel_cfg)
    config = transformer_config(model_cfg, parallel_cfg, bf16=dtype == "bfloat16")
    config.params_dtype = HF_DTYPES[dtype]
    config.perform_initialization = False  # every value is overwritten from HF
    chunks = build_model(model_cfg, config, model_cfg.max_position_embeddings)
    state = checkpointing.model_sharded_state_dict(chunks)
    apply_factories(state)
    _detach_views(state)
    hf = HFWeights(hf_dir)
    fill_from_hf(state, hf, model_cfg)
    staging = Path(output) / f".{checkpointing.RELEASE}.partial"
    rank0 = torch.distributed.get_rank() == 0
    if rank0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    torch.distributed.barrier()
    dist_checkpointing.save(state, str(staging))
    torch.distributed.barrier()
    used = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(used, sorted(hf.used))
    if rank0:
        leftover = sorted(set(hf.location) - set().union(*map(set, used)))
        if leftover:
            shutil.rmtree(staging)
            raise ConversionError(
                f"{hf_dir}: HF tensors not used by the model: {leftover[:8]}"
                f"{' ...' if len(leftover) > 8 else ''} (does config.json match "
                "the weights?)"
            )
        (staging / checkpointing.MODEL_CONFIG).write_text(
            yaml.safe_dump(dataclasses.asdict(model_cfg))
        )
        (staging / "hf_source.json").write_text(
            json.dumps({"hf_model": str(hf_dir), "dtype": dtype})
        )
        for name in TOKENIZER_FILES:
            if (Path(hf_dir) / name).is_file():
                shutil.copy(Path(hf_dir) / name, staging / name)
        final = checkpointing.iteration_dir(output, checkpointing.RELEASE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        checkpointing.write_latest(output, checkpointing.RELEASE)
    torch.distributed.barrier()
    parallel_state.destroy_model_parallel()
    return sorted(hf.used)


def hf_dtype(hf_dir: str | Path) -> str:
    """The checkpoint's dtype name from config.json (default float32)."""
    config = json.loads((Path(hf_dir) / "config.json").read_text())
    name = str(config.get("dtype") or config.get("torch_dtype") or "float32").replace("torch.", "")
    if name not in HF_DTYPES:
        raise ConversionError(f"{hf_dir}/config.json: unsupported dtype {name}")
    return name


# --- export -----------------------------------------------------------------------------------


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint root (with the latest marker) or an iteration directory -> the directory."""
    from megatron_agentic import checkpointing

    path = Path(path)
    latest = checkpointing.read_latest(path)
    if latest is not None:
        return checkpointing.iteration_dir(path, latest)
    if (path / checkpointing.MODEL_CONFIG).is_file():
        return path
    raise ConversionError(
        f"{path}: neither a checkpoint root ({checkpointing.LATEST}) nor an "
        f"iteration directory ({checkpointing.MODEL_CONFIG})"
    )


def export_hf_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    dtype: str | None = None,
    tokenizer_dir: str | Path | None = None,
    max_shard_bytes: int = 5 * 10**9,
) -> Path:
    """Write an HF Qwen3MoeForCausalLM directory from a dist checkpoint, a layer at a time."""
    from megatron_agentic.local_ranks import run_on_ranks

    directory = resolve_checkpoint(checkpoint)
    output = Path(output)
    # dist_checkpointing loads part of a tensor only when the other parts belong to another rank:
    # two ranks load the same layers; rank 0 writes.
    run_on_ranks(_export_rank, 2, directory, output, dtype, tokenizer_dir, max_shard_bytes)
    return output


def _export_rank(directory: Path, output: Path, dtype, tokenizer_dir, max_shard_bytes) -> None:
    from safetensors.torch import save_file

    from megatron_agentic import checkpointing

    torch.distributed.init_process_group("gloo")
    rank0 = torch.distributed.get_rank() == 0
    model_cfg = Qwen3MoEConfig(
        **yaml.safe_load((directory / checkpointing.MODEL_CONFIG).read_text())
    )
    metadata = _tensor_metadata(directory)
    keys = sorted(k for k in metadata if k.startswith(("embedding", "decoder", "output_layer")))
    dtype = dtype or _checkpoint_dtype(directory)
    staging = output.parent / f".{output.name}.partial"
    if rank0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    writer = _ShardWriter(staging, max_shard_bytes, save_file)
    groups = [([k for k in keys if not k.startswith(LAYER)], None)]
    groups += [
        ([k for k in keys if k.startswith(LAYER)], layer) for layer in range(model_cfg.num_layers)
    ]
    for group_keys, layer in groups:
        tensors = _export_group(directory, metadata, group_keys, layer, model_cfg, dtype)
        if rank0:
            writer.add(tensors)
    if not rank0:
        return
    writer.finish()
    (staging / "config.json").write_text(
        json.dumps(hf_config_from_model(model_cfg, dtype), indent=2)
    )
    (staging / "generation_config.json").write_text(
        json.dumps({"do_sample": False, "max_new_tokens": 256}, indent=2)
    )
    _copy_tokenizer(directory, tokenizer_dir, staging)
    shutil.rmtree(output, ignore_errors=True)
    os.replace(staging, output)


def _tensor_metadata(directory: Path) -> dict:
    """Global shape and dtype of every tensor in a torch_dist checkpoint. (megatron-core 0.19's
    load_tensors_metadata fails on torch >= 2.14's TensorProperties; the torch metadata is the
    same information.)"""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = FileSystemReader(str(directory)).read_metadata().state_dict_metadata
    return {
        key: _TensorMeta(tuple(value.size), value.properties.dtype)
        for key, value in metadata.items()
        if isinstance(value, TensorStorageMetadata)
    }


@dataclasses.dataclass
class _TensorMeta:
    global_shape: tuple[int, ...]
    dtype: torch.dtype


def _checkpoint_dtype(directory: Path) -> str:
    source = directory / "hf_source.json"
    if source.is_file():
        return json.loads(source.read_text())["dtype"]
    run_config = directory / "run_config.yaml"
    if run_config.is_file():
        bf16 = (yaml.safe_load(run_config.read_text()) or {}).get("optimizer", {}).get("bf16")
        return "bfloat16" if bf16 else "float32"
    return "float32"


def _export_group(directory, metadata, keys, layer, model_cfg, dtype) -> dict[str, torch.Tensor]:
    """Load the given keys (one layer's, or the global ones) and map them to HF names."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    request = {}
    for key in keys:
        meta = metadata[key]
        shape = tuple(meta.global_shape)
        if layer is None:
            request[(key, None)] = ShardedTensor.from_rank_offsets(
                key, torch.empty(shape, dtype=meta.dtype), replica_id=0
            )
        elif key.startswith(EXPERTS):
            for expert in range(shape[1]):
                request[(key, expert)] = ShardedTensor.from_rank_offsets(
                    key,
                    torch.empty(shape[2:], dtype=meta.dtype),
                    (0, layer, shape[0]),
                    (1, expert, shape[1]),
                    replica_id=0,
                    prepend_axis_num=2,
                )
        else:
            request[(key, None)] = ShardedTensor.from_rank_offsets(
                key,
                torch.empty(shape[1:], dtype=meta.dtype),
                (0, layer, shape[0]),
                replica_id=0,
                prepend_axis_num=1,
            )
    flat = {f"{k}|{e}": v for (k, e), v in request.items()}
    # One layer at a time covers only part of each stacked tensor: skip the whole-coverage check.
    loaded = dist_checkpointing.load(flat, str(directory), validate_access_integrity=False)
    tensors = {}
    for (key, expert), _ in request.items():
        tensor = loaded[f"{key}|{expert}"]
        for name, value in hf_from_megatron(key, layer, expert, tensor, model_cfg).items():
            if name in tensors:
                raise ConversionError(f"{name} produced twice")
            tensors[name] = value.to(HF_DTYPES[dtype]).contiguous()
    return tensors


class _ShardWriter:
    """Accumulate tensors into ~max_bytes safetensors shards and write the index."""

    def __init__(self, directory: Path, max_bytes: int, save_file):
        self.directory, self.max_bytes, self.save_file = directory, max_bytes, save_file
        self.pending: dict[str, torch.Tensor] = {}
        self.shards: list[list[str]] = []
        self.pending_bytes = 0
        self.total = 0

    def add(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, tensor in tensors.items():
            size = tensor.numel() * tensor.element_size()
            if self.pending and self.pending_bytes + size > self.max_bytes:
                self._flush()
            self.pending[name] = tensor
            self.pending_bytes += size
            self.total += size

    def _flush(self) -> None:
        number = len(self.shards) + 1
        path = self.directory / f"model-{number:05d}.safetensors.partial"
        self.save_file(self.pending, str(path), metadata={"format": "pt"})
        self.shards.append(list(self.pending))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> None:
        if self.pending:
            self._flush()
        count = len(self.shards)
        weight_map = {}
        for number, names in enumerate(self.shards, 1):
            final = f"model-{number:05d}-of-{count:05d}.safetensors"
            os.replace(
                self.directory / f"model-{number:05d}.safetensors.partial", self.directory / final
            )
            weight_map.update({name: final for name in names})
        index = {
            "metadata": {"total_size": self.total},
            "weight_map": dict(sorted(weight_map.items())),
        }
        (self.directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _copy_tokenizer(directory: Path, tokenizer_dir, staging: Path) -> None:
    candidates = [Path(tokenizer_dir)] if tokenizer_dir else []
    candidates.append(directory)
    run_config = directory / "run_config.yaml"
    if run_config.is_file():
        model = ((yaml.safe_load(run_config.read_text()) or {}).get("data") or {}).get(
            "tokenizer_model"
        )
        if model:
            candidates.append(Path(model))
    for candidate in candidates:
        if candidate.is_dir() and (candidate / "tokenizer.json").is_file():
            for name in TOKENIZER_FILES:
                if (candidate / name).is_file():
                    shutil.copy(candidate / name, staging / name)
            return
