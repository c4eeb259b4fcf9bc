"""Stage data mixtures (blend YAML) and megatron-core GPTDatasets over them.

A blend file names datasets (prefixes written by tools/preprocess_data.py) with weights, and the
train/valid/test split applied inside each dataset:

    # examples/data_mixture/stage1.yaml
    split: "99,1,0"
    datasets:
      - {name: fas,     prefix: tok/fas_text_document,     weight: 40}
      - {name: has,     prefix: tok/has_text_document,     weight: 30}
      - {name: general, prefix: tok/general_text_document, weight: 30}

Weights are relative (normalised by megatron-core); relative prefixes are resolved against the
blend file's directory. `build_gpt_datasets` hands the blend to megatron-core's
BlendedMegatronDatasetBuilder, which samples deterministically from the seed and caches its
indices under `cache_dir` (built by one rank first, then read by the others). Before that, every
rank checks each dataset (data/checks.py: the .bin/.idx pair, its tokenizer record and largest
token id against the trainer's tokenizer, splits that would get no tokens), so bad data fails at
start on all ranks with the file named; rank 0 also removes torn or stale index caches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from megatron_agentic.data.indexed import dataset_exists


class BlendError(ValueError):
    """A blend file that cannot be used, with the file and key at fault."""


@dataclass
class BlendDataset:
    """One dataset of a blend."""

    name: str
    prefix: str
    weight: float


@dataclass
class DataBlend:
    """Datasets with weights, and the per-dataset train/valid/test split."""

    datasets: list[BlendDataset]
    split: str = "98,2,0"

    def megatron_blend(self) -> tuple[list[str], list[float]]:
        """megatron-core's `blend` argument: (prefixes, weights)."""
        return [d.prefix for d in self.datasets], [d.weight for d in self.datasets]


def load_blend(path: str | Path) -> DataBlend:
    """Parse and check a blend YAML; every dataset's .bin/.idx must exist."""
    path = Path(path)
    if not path.is_file():
        raise BlendError(f"{path}: blend file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise BlendError(f"{path}: not valid YAML: {error}") from None
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("datasets"), list)
        or not raw["datasets"]
    ):
        raise BlendError(f"{path}: needs a non-empty list under 'datasets'")
    unknown = set(raw) - {"datasets", "split"}
    if unknown:
        raise BlendError(f"{path}: unknown key(s) {sorted(unknown)} (known: datasets, split)")
    split = str(raw.get("split", "98,2,0"))
    parts = split.split(",")
    if len(parts) != 3 or not all(_is_number(p) and float(p) >= 0 for p in parts):
        raise BlendError(f"{path}: split {split!r} must be three non-negative numbers 'a,b,c'")
    datasets = [_blend_dataset(path, i, entry) for i, entry in enumerate(raw["datasets"])]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise BlendError(f"{path}: dataset names repeat: {names}")
    return DataBlend(datasets=datasets, split=split)


def _blend_dataset(path: Path, index: int, entry) -> BlendDataset:
    where = f"{path}: datasets[{index}]"
    if not isinstance(entry, dict):
        raise BlendError(f"{where} must be a mapping with name, prefix, weight")
    unknown = set(entry) - {"name", "prefix", "weight"}
    missing = {"prefix", "weight"} - set(entry)
    if unknown or missing:
        raise BlendError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    weight = entry["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
        raise BlendError(f"{where}.weight must be a positive number, got {weight!r}")
    prefix = Path(str(entry["prefix"]))
    if not prefix.is_absolute():
        prefix = path.parent / prefix
    if not dataset_exists(prefix):
        raise BlendError(f"{where}.prefix: no dataset {prefix}.bin/.idx (run preprocess_data.py)")
    return BlendDataset(
        name=str(entry.get("name", prefix.name)), prefix=str(prefix), weight=float(weight)
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def build_gpt_datasets(
    blend: DataBlend,
    tokenizer,
    seq_length: int,
    seed: int,
    num_samples: tuple[int, int, int],
    cache_dir: str | Path,
    masking: dict | None = None,
):
    """(train, valid, test) megatron-core datasets; None where a split has no samples.
    `masking`: GPTDatasetConfig's document-masking fields (`document_masking.dataset_options`)."""
    import torch
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from megatron_agentic.data.checks import (
        check_splits,
        check_vocabulary,
        record_cache,
        repair_cache,
        validate_pair,
    )

    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=blend.megatron_blend(),
        split=blend.split,
        path_to_cache=str(cache_dir),
        tokenizer=tokenizer,
        **(
            masking
            or dict(
                reset_position_ids=False,
                reset_attention_mask=False,
                eod_mask_loss=False,
                create_attention_mask=False,
            )
        ),
    )
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    prefixes = [d.prefix for d in blend.datasets]
    for prefix in prefixes:  # on every rank: all of them stop with the same message
        validate_pair(prefix)
        check_vocabulary(prefix, tokenizer)
        check_splits(prefix, blend.split)

    def build():
        return BlendedMegatronDatasetBuilder(
            GPTDataset, list(num_samples), lambda: True, config
        ).build()

    # One rank writes the index caches; the others then read them.
    if rank == 0:
        repair_cache(cache_dir, prefixes)
        datasets = build()
        record_cache(cache_dir, prefixes)
    if distributed:
        torch.distributed.barrier()
    if rank != 0:
        datasets = build()
    return tuple(datasets)
