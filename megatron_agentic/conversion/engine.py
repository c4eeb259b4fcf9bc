"""The conversion engine: HF -> megatron-core per rank, megatron-core -> HF per layer.

Everything here is keyed on megatron-core's own sharding metadata: every tensor of a GPTModel's
sharded state dict has a global key (e.g. `decoder.layers.self_attention.linear_qkv.weight`), a
global shape with the layer (and expert) axes prepended, and the offset of this rank's slice. So
one family table (see table.py) serves every TP/PP/EP layout, and the sequential-expert (local
spec) and grouped-GEMM (TE spec) layouts alike, which share these keys.

Import (`import_rank`, one process per rank): build this rank's model without initialising it,
fill each local tensor from the HF tensors its rule names (read lazily, one at a time), and save a
`release` dist checkpoint. Export (`export_hf_checkpoint`, two processes, rank 0 writing): read the
dist checkpoint one layer at a time and write HF safetensors shards. Every HF tensor must be used
and every Megatron tensor filled; anything left over is an error naming it. Layout, config and
output are checked before any process starts (`check_import`, `check_export`); outputs are
written under temporary names and moved into place when complete, and an export never deletes a
file it did not write.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

from megatron_agentic.conversion import family_for_hf, family_for_model
from megatron_agentic.conversion.hf_files import (
    HF_DTYPES,
    HFWeights,
    ShardWriter,
    apply_umask,
)
from megatron_agentic.conversion.table import ConversionError, NameTable

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "chat_template.jinja",
)
GENERATION_CONFIG = "generation_config.json"
TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")
EXPORT_RECORD = "megatron_export.json"  # marks a directory as an export of ours, lists its files


class Progress:
    """`label i/n what - elapsed, ETA` lines on stdout (one process prints)."""

    def __init__(self, label: str, total: int, enabled: bool = True):
        self.label, self.total, self.enabled = label, total, enabled
        self.done, self.start = 0, time.perf_counter()

    def step(self, what: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        print(
            f"[{self.label}] {self.done}/{self.total} {what} - {elapsed:.1f} s, ETA {eta:.1f} s",
            flush=True,
        )


def read_hf_config(hf_dir: str | Path):
    """(family module, our architecture config) of an HF model directory."""
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise ConversionError(f"{path}: no config.json")
    config = json.loads(path.read_text())
    family = family_for_hf(config, str(path))
    return family, family.model_config_from_hf(config, str(path))


# --- import -----------------------------------------------------------------------------------


def check_import(hf_dir: str, parallel_cfg) -> int:
    """Validate the config and the layout before any process starts; returns the world size."""
    from megatron_agentic.parallel import LayoutError, validate_layout

    _, model_cfg = read_hf_config(hf_dir)
    p = parallel_cfg
    sizes = (p.tp, p.pp, p.ep, p.etp)
    world_size = math.lcm(p.tp * p.pp, p.ep * p.etp * p.pp) if min(sizes) >= 1 else 1
    try:
        validate_layout(model_cfg, parallel_cfg, world_size)
    except LayoutError as error:
        raise ConversionError(f"{hf_dir}/config.json: {error}") from None
    if not model_cfg.num_experts and (p.ep, p.etp) != (1, 1):
        raise ConversionError(f"{hf_dir}: a dense model has no experts: use --ep 1 --etp 1")
    return world_size


def _sharded_tensors(state: dict) -> list:
    """The ShardedTensors of a sharded state dict whose factories were applied (so the fused
    SwiGLU fc1 appears as its gate and up halves); their `.data` are views of the parameters."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    return [value for value in nested_values(state) if isinstance(value, ShardedTensor)]


def _from_hf(table: NameTable, sharded, hf: HFWeights, model_cfg) -> torch.Tensor:
    """The whole Megatron tensor (of one layer and expert) a sharded tensor is a slice of."""
    rule = table[sharded.key]
    prepend = sharded.prepend_axis_num
    if prepend != rule.prepended_axes:
        raise ConversionError(
            f"{sharded.key}: megatron-core prepends {prepend} axes, the {table.family} table "
            f"expects {rule.prepended_axes}"
        )
    layer = sharded.global_offset[0] if prepend >= 1 else None
    expert = sharded.global_offset[1] if prepend >= 2 else None
    shape = tuple(sharded.global_shape[prepend:])
    names = rule.hf_names(layer, expert)
    parts = [hf.get(n, s) for n, s in zip(names, rule.hf_shapes(shape, model_cfg))]
    return rule.transform.merge(parts, model_cfg)


def fill_from_hf(state: dict, hf: HFWeights, table: NameTable, model_cfg, progress=None) -> int:
    """Copy into every local tensor its slice of the HF weights; returns the count filled."""
    filled = 0
    cache: dict[tuple, torch.Tensor] = {}
    for sharded in _sharded_tensors(state):
        source_key = (sharded.key, *sharded.global_offset[: sharded.prepend_axis_num])
        if source_key not in cache:
            cache.clear()  # one source tensor at a time (plus the fc1 halves sharing it)
            cache[source_key] = _from_hf(table, sharded, hf, model_cfg)
            if progress is not None:
                progress.step(sharded.key + "".join(f"[{i}]" for i in source_key[1:]))
        full = cache[source_key]
        index = tuple(
            slice(o, o + n)
            for o, n in zip(sharded.global_offset[sharded.prepend_axis_num :], sharded.local_shape)
        )
        with torch.no_grad():
            sharded.data.copy_(full[index])
        filled += 1
    return filled


def _source_count(state: dict) -> int:
    return len({(s.key, *s.global_offset[: s.prepend_axis_num]) for s in _sharded_tensors(state)})


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


def _unknown_hf_tensors(hf: HFWeights, table: NameTable) -> list[str]:
    return sorted(name for name in hf.location if table.megatron_for(name) is None)


def _base_model_record(hf_dir: Path) -> dict:
    """What an export needs from the base model later: its token ids."""
    config = json.loads((hf_dir / "config.json").read_text())
    return {key: config[key] for key in TOKEN_IDS if config.get(key) is not None}


def import_rank(hf_dir: str, output: str, parallel_cfg, dtype: str) -> list[str]:
    """One rank of the import: returns the HF tensor names this rank used."""
    from megatron.core import dist_checkpointing, parallel_state
    from megatron.core.dist_checkpointing.mapping import apply_factories

    from megatron_agentic import checkpointing, megatron_lm_compat, parallel
    from megatron_agentic.model import build_model, transformer_config

    family, model_cfg = read_hf_config(hf_dir)
    hf = HFWeights(hf_dir)
    unknown = _unknown_hf_tensors(hf, family.TABLE)
    if unknown:
        raise ConversionError(
            f"{hf_dir}: HF tensors the {family.MODEL_TYPE} table has no Megatron name for: "
            f"{unknown[:8]}{' ...' if len(unknown) > 8 else ''}"
        )
    parallel.initialize(parallel_cfg)
    rank0 = torch.distributed.get_rank() == 0
    config = transformer_config(model_cfg, parallel_cfg, bf16=dtype == "bfloat16")
    config.params_dtype = HF_DTYPES[dtype]
    config.perform_initialization = False  # every value is overwritten from HF
    chunks = build_model(model_cfg, config, model_cfg.max_position_embeddings)
    state = checkpointing.model_sharded_state_dict(chunks)
    apply_factories(state)
    _detach_views(state)
    progress = Progress("import rank 0", _source_count(state), enabled=rank0)
    fill_from_hf(state, hf, family.TABLE, model_cfg, progress)
    state.update(megatron_lm_compat.common_state(model_cfg, iteration=0, consumed_samples=0))
    staging = Path(output) / f".{checkpointing.RELEASE}.partial"
    if rank0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        print("[import] writing the dist checkpoint", flush=True)
    torch.distributed.barrier()
    with checkpointing.without_async_notice():
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
        _write_release_files(Path(hf_dir), staging, model_cfg, dtype)
        final = checkpointing.iteration_dir(output, checkpointing.RELEASE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        checkpointing.write_latest(output, checkpointing.RELEASE)
    torch.distributed.barrier()
    parallel_state.destroy_model_parallel()
    return sorted(hf.used)


def _write_release_files(hf_dir: Path, staging: Path, model_cfg, dtype: str) -> None:
    from megatron_agentic import checkpointing

    (staging / checkpointing.MODEL_CONFIG).write_text(yaml.safe_dump(dataclasses.asdict(model_cfg)))
    source = {"hf_model": str(hf_dir), "dtype": dtype, **_base_model_record(hf_dir)}
    (staging / "hf_source.json").write_text(json.dumps(source))
    for name in (*TOKENIZER_FILES, GENERATION_CONFIG):
        if (hf_dir / name).is_file():
            shutil.copy(hf_dir / name, staging / name)


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


def check_export(checkpoint: str | Path, output: str | Path, overwrite: bool) -> Path:
    """Refuse an output that would destroy the input or files the exporter did not write;
    returns the checkpoint's iteration directory."""
    directory = resolve_checkpoint(checkpoint)
    out = Path(output).resolve()
    for source in {Path(checkpoint).resolve(), directory.resolve()}:
        if out == source or out in source.parents:
            raise ConversionError(f"--output {output} holds the input checkpoint {checkpoint}")
    if out.exists() and not out.is_dir():
        raise ConversionError(f"--output {output} is a file, not a directory")
    if (
        out.is_dir()
        and any(out.iterdir())
        and not (out / EXPORT_RECORD).is_file()
        and not overwrite
    ):
        raise ConversionError(
            f"--output {output} is a non-empty directory that is not an earlier export "
            f"(no {EXPORT_RECORD}); pass --overwrite to write into it (files of other names "
            "are kept)"
        )
    return directory


def export_hf_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    dtype: str | None = None,
    tokenizer_dir: str | Path | None = None,
    max_shard_bytes: int = 5 * 10**9,
    overwrite: bool = False,
) -> Path:
    """Write an HF directory (of the checkpoint's family) from a dist checkpoint, layer by layer."""
    from megatron_agentic.local_ranks import run_on_ranks

    directory = check_export(checkpoint, output, overwrite)
    output = Path(output)
    # dist_checkpointing loads part of a tensor only when the other parts belong to another rank:
    # two ranks load the same layers; rank 0 writes.
    run_on_ranks(
        _export_rank, 2, directory, output, dtype, tokenizer_dir, max_shard_bytes, str(checkpoint)
    )
    return output


def _load_model_config(directory: Path):
    from megatron_agentic import checkpointing
    from megatron_agentic.model import Qwen3MoEConfig

    return Qwen3MoEConfig(**yaml.safe_load((directory / checkpointing.MODEL_CONFIG).read_text()))


def _export_rank(directory, output, dtype, tokenizer_dir, max_shard_bytes, source) -> None:
    torch.distributed.init_process_group("gloo")
    rank0 = torch.distributed.get_rank() == 0
    model_cfg = _load_model_config(directory)
    family = family_for_model(model_cfg)
    groups = _export_groups(_tensor_metadata(directory), family.TABLE, model_cfg.num_layers)
    dtype = dtype or _checkpoint_dtype(directory)
    staging = output.parent / f".{output.name}.partial"
    if rank0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    torch.distributed.barrier()
    writer = ShardWriter(staging, max_shard_bytes)
    progress = Progress("export", len(groups), enabled=rank0)
    for layer, group in groups:
        tensors = _export_group(directory, group, layer, family.TABLE, model_cfg, dtype)
        if rank0:
            writer.add(tensors)
        progress.step("model-wide tensors" if layer is None else f"layer {layer}")
    if rank0:
        files = writer.finish()
        config = {**family.hf_config_from_model(model_cfg, dtype)}
        sources = _source_dirs(directory, tokenizer_dir)
        config.update(_token_ids(sources))
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        files.append("config.json")
        files += _copy_side_files(sources, staging, config)
        (staging / EXPORT_RECORD).write_text(
            json.dumps({"source": source, "dtype": dtype, "files": sorted(files)}, indent=2)
        )
        for name in os.listdir(staging):
            apply_umask(staging / name)
        _publish(staging, output)
    torch.distributed.barrier()  # both processes finish together: success is reported as such


@dataclasses.dataclass
class _TensorMeta:
    global_shape: tuple[int, ...]
    dtype: torch.dtype


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
        and key.startswith(("embedding", "decoder", "output_layer"))
    }


def _export_groups(metadata: dict, table: NameTable, num_layers: int) -> list:
    """[(None, model-wide keys), (0, layer keys), (1, ...)]; each key as (on disk, in the table).
    A checkpoint written before the TE key change is read under its old keys."""
    from megatron_agentic.checkpoint_keys import current_key

    keys = []
    for on_disk in sorted(metadata):
        key = on_disk if on_disk in table.rules else current_key(on_disk)
        keys.append((on_disk, key, metadata[on_disk], table[key].prepended_axes))
    model_wide = [k for k in keys if k[3] == 0]
    per_layer = [k for k in keys if k[3] > 0]
    return [(None, model_wide)] + [(layer, per_layer) for layer in range(num_layers)]


def _export_group(directory, keys, layer, table, model_cfg, dtype) -> dict[str, torch.Tensor]:
    """Load the given keys (one layer's, or the model-wide ones) and map them to HF names."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    request = {}
    for on_disk, key, meta, axes in keys:
        shape = tuple(meta.global_shape)
        for expert in range(shape[1]) if axes == 2 else [None]:
            offsets = [(0, layer, shape[0])] if axes >= 1 else []
            offsets += [(1, expert, shape[1])] if axes == 2 else []
            request[f"{key}|{expert}"] = ShardedTensor.from_rank_offsets(
                on_disk,
                torch.empty(shape[axes:], dtype=meta.dtype),
                *offsets,
                replica_id=0,
                prepend_axis_num=axes,
            )
    # One layer at a time covers only part of each stacked tensor: skip the whole-coverage check.
    loaded = dist_checkpointing.load(request, str(directory), validate_access_integrity=False)
    tensors = {}
    for flat in request:  # `loaded` also holds the checkpoint's common state
        tensor = loaded[flat]
        key, expert = flat.split("|")
        rule = table[key]
        expert = None if expert == "None" else int(expert)
        for name, value in zip(
            rule.hf_names(layer, expert), rule.transform.split(tensor, model_cfg)
        ):
            if name in tensors:
                raise ConversionError(f"{name} produced twice")
            tensors[name] = value.to(HF_DTYPES[dtype]).contiguous()
    return tensors


def _checkpoint_dtype(directory: Path) -> str:
    source = directory / "hf_source.json"
    if source.is_file():
        return json.loads(source.read_text())["dtype"]
    run_config = directory / "run_config.yaml"
    if run_config.is_file():
        bf16 = (yaml.safe_load(run_config.read_text()) or {}).get("optimizer", {}).get("bf16")
        return "bfloat16" if bf16 else "float32"
    return "float32"


def _source_dirs(directory: Path, tokenizer_dir) -> list[Path]:
    """Where the base model's files may be, in order: --tokenizer, the checkpoint itself (an
    import keeps them), the checkpoint the run started from, the run's tokenizer directory."""
    candidates = [Path(tokenizer_dir)] if tokenizer_dir else []
    candidates.append(directory)
    run_config = directory / "run_config.yaml"
    if run_config.is_file():
        run = yaml.safe_load(run_config.read_text()) or {}
        start = (run.get("checkpoint") or {}).get("load")
        if start:
            try:
                candidates.append(resolve_checkpoint(start))
            except (ConversionError, ValueError):
                pass
        model = (run.get("data") or {}).get("tokenizer_model")
        if model:
            candidates.append(Path(model))
    return [c for c in candidates if c.is_dir()]


def _token_ids(sources: list[Path]) -> dict:
    """bos/eos/pad ids of the base model (an import's record, or an HF config.json)."""
    for source in sources:
        for name in ("hf_source.json", "config.json"):
            if (source / name).is_file():
                record = json.loads((source / name).read_text())
                ids = {k: record[k] for k in TOKEN_IDS if record.get(k) is not None}
                if ids:
                    return ids
    return {}


def _copy_side_files(sources: list[Path], staging: Path, config: dict) -> list[str]:
    """Tokenizer files and the base model's generation_config.json; returns the names written."""
    written = []
    for source in sources:
        if (source / "tokenizer.json").is_file():
            for name in TOKENIZER_FILES:
                if (source / name).is_file():
                    shutil.copy(source / name, staging / name)
                    written.append(name)
            break
    generation = next(
        (s / GENERATION_CONFIG for s in sources if (s / GENERATION_CONFIG).is_file()), None
    )
    if generation is not None:
        shutil.copy(generation, staging / GENERATION_CONFIG)
    else:  # no base model found: its token ids only, no sampling or length settings
        ids = {k: config[k] for k in TOKEN_IDS if k in config}
        (staging / GENERATION_CONFIG).write_text(json.dumps(ids, indent=2))
    return written + [GENERATION_CONFIG]


def _publish(staging: Path, output: Path) -> None:
    """Move a finished export into place, deleting only files an earlier export of ours wrote."""
    if not output.exists():
        os.replace(staging, output)
        return
    record = output / EXPORT_RECORD
    earlier = json.loads(record.read_text())["files"] if record.is_file() else []
    new = set(os.listdir(staging))
    for name in earlier:
        if name not in new and (output / name).is_file():
            (output / name).unlink()
    record.unlink(missing_ok=True)  # the directory is not "ours" while files are replaced
    for name in sorted(new - {EXPORT_RECORD}) + [EXPORT_RECORD]:
        os.replace(staging / name, output / name)
    staging.rmdir()
    shadowing = [n for n in os.listdir(output) if n == "model.safetensors" or n.endswith(".bin")]
    if shadowing:
        print(
            f"warning: {output} also holds {shadowing}, not written by this export; loaders "
            "may prefer them to model.safetensors.index.json",
            file=sys.stderr,
        )
