"""Hugging Face checkpoint files: a streaming safetensors reader and a sharded writer.

`HFWeights` maps the shards of an HF directory lazily (at most `open_shards` at a time) and records
which tensors were read, so an import can name every tensor it did not use. `ShardWriter` gathers
tensors into ~max-bytes safetensors shards under temporary names and writes the index once all
are complete. Both name the file at fault in their errors.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import torch

from megatron_agentic.conversion.table import ConversionError

HF_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def hf_dtype(hf_dir: str | Path) -> str:
    """The checkpoint's dtype name from config.json (default float32)."""
    config = json.loads((Path(hf_dir) / "config.json").read_text())
    name = str(config.get("dtype") or config.get("torch_dtype") or "float32").replace("torch.", "")
    if name not in HF_DTYPES:
        raise ConversionError(f"{hf_dir}/config.json: unsupported dtype {name}")
    return name


def apply_umask(path: Path) -> None:
    """Give a file the permissions the process umask allows (safetensors writes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


class ShardWriter:
    """Accumulate tensors into ~max_bytes safetensors shards and write the index."""

    def __init__(self, directory: Path, max_bytes: int):
        self.directory, self.max_bytes = directory, max_bytes
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
        from safetensors.torch import save_file

        number = len(self.shards) + 1
        path = self.directory / f"model-{number:05d}.safetensors.partial"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        apply_umask(path)
        self.shards.append(list(self.pending))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> list[str]:
        """Rename the shards to their final names and write the index; returns the file names."""
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
        return sorted(set(weight_map.values())) + ["model.safetensors.index.json"]
