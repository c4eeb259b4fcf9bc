"""One name table per model family, driving both conversion directions.

A `Rule` ties one Megatron tensor (its global sharded key, e.g.
`decoder.layers.self_attention.linear_qkv.weight`) to the Hugging Face tensors it holds (name
templates with `{layer}` and `{expert}`) through a `Transform`: `merge` builds the Megatron
tensor from the HF ones (import), `split` is its inverse (export). Each transform is defined once
with its inverse; the HF shapes an import expects are `split` applied to the Megatron shape (on
the meta device), so shapes are written nowhere either. The placeholders a rule uses give the
number of axes megatron-core prepends to the tensor's global shape: none for model-wide tensors,
the layer, or the layer and the expert.

`NameTable` indexes the rules by Megatron key (import and export both look rules up by the key
they are filling or reading) and computes the inverse, HF name -> (Megatron key, layer, expert),
which the import uses to refuse HF tensors the family does not know before any work is done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch


class ConversionError(ValueError):
    """Input that cannot be converted, naming the file or tensor at fault."""


class Transform:
    """HF tensors <-> one Megatron tensor. The default is the identity on one tensor."""

    name = "identity"

    def merge(self, parts: list[torch.Tensor], model) -> torch.Tensor:
        (tensor,) = parts
        return tensor

    def split(self, tensor: torch.Tensor, model) -> list[torch.Tensor]:
        return [tensor]


class QKVInterleave(Transform):
    """q, k, v projections <-> Megatron's fused QKV, interleaved by query group:
    [q heads of group g, k_g, v_g] for each group g."""

    name = "qkv_interleave"

    def merge(self, parts, model):
        q, k, v = parts
        groups, d, h = model.num_query_groups, model.head_dim, q.shape[-1]
        q = q.view(groups, -1, h)
        return torch.cat([q, k.view(groups, d, h), v.view(groups, d, h)], dim=1).view(-1, h)

    def split(self, tensor, model):
        groups, d, h = model.num_query_groups, model.head_dim, tensor.shape[-1]
        q_rows = model.num_attention_heads // groups * d
        q, k, v = torch.split(tensor.view(groups, -1, h), [q_rows, d, d], dim=1)
        return [q.reshape(-1, h), k.reshape(-1, h), v.reshape(-1, h)]


class GateUpFuse(Transform):
    """SwiGLU gate and up projections <-> Megatron's fused linear_fc1 (gate rows first)."""

    name = "gate_up_fuse"

    def merge(self, parts, model):
        return torch.cat(parts)

    def split(self, tensor, model):
        return list(torch.chunk(tensor, 2, dim=0))


IDENTITY, QKV, GATE_UP = Transform(), QKVInterleave(), GateUpFuse()


@dataclass(frozen=True)
class Rule:
    """One Megatron tensor and the HF tensors it holds."""

    megatron: str
    hf: tuple[str, ...]
    transform: Transform = IDENTITY

    @property
    def prepended_axes(self) -> int:
        """Axes megatron-core prepends to the global shape: 0 (model-wide), 1 (layer), 2 (expert)."""
        text = " ".join(self.hf)
        return 2 if "{expert}" in text else 1 if "{layer}" in text else 0

    def hf_names(self, layer: int | None, expert: int | None) -> list[str]:
        return [name.format(layer=layer, expert=expert) for name in self.hf]

    def hf_shapes(self, megatron_shape: tuple[int, ...], model) -> list[tuple[int, ...]]:
        """The HF shapes that make up a Megatron tensor of this shape (the inverse, on meta)."""
        meta = torch.empty(megatron_shape, device="meta")
        return [tuple(part.shape) for part in self.transform.split(meta, model)]


def rule(megatron: str, *hf: str, transform: Transform = IDENTITY) -> Rule:
    return Rule(megatron, tuple(hf), transform)


class NameTable:
    """The rules of one family, looked up by Megatron key; the HF -> Megatron index is derived."""

    def __init__(self, family: str, rules: list[Rule]):
        self.family = family
        self.rules = {r.megatron: r for r in rules}
        if len(self.rules) != len(rules):
            raise ValueError(f"{family}: a Megatron key appears in two rules")
        self._inverse: list[tuple[re.Pattern, Rule, int]] = []
        seen = set()
        for r in rules:
            for index, template in enumerate(r.hf):
                if template in seen:
                    raise ValueError(f"{family}: HF name {template} appears in two rules")
                seen.add(template)
                pattern = re.escape(template)
                for field in ("layer", "expert"):
                    pattern = pattern.replace(re.escape("{" + field + "}"), rf"(?P<{field}>\d+)")
                self._inverse.append((re.compile(pattern + r"\Z"), r, index))

    def __getitem__(self, megatron_key: str) -> Rule:
        if megatron_key not in self.rules:
            raise ConversionError(
                f"{self.family}: no HF name for Megatron tensor {megatron_key} (known: "
                f"{', '.join(sorted(self.rules))})"
            )
        return self.rules[megatron_key]

    def megatron_for(self, hf_name: str) -> tuple[str, int | None, int | None] | None:
        """(Megatron key, layer, expert) holding an HF tensor, or None if the family has none."""
        for pattern, r, _ in self._inverse:
            match = pattern.match(hf_name)
            if match:
                found = {k: int(v) for k, v in match.groupdict().items()}
                return r.megatron, found.get("layer"), found.get("expert")
        return None
