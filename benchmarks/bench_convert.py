#!/usr/bin/env python3
"""Checkpoint-conversion throughput and peak memory on a synthetic multi-GB Qwen3-MoE.

Writes a random bf16 Qwen3-MoE checkpoint in the hub's layout (sharded safetensors + index +
config.json), then, in one run, times: a plain copy of its files; tools/convert_checkpoint.py
hf-to-megatron (one rank, or --ep ranks each holding 1/ep of the experts); and megatron-to-hf.
Prints GB/s and each step's peak RSS (of its largest process: one rank's memory).

    python benchmarks/bench_convert.py --layers 8 --experts 64 --hidden 1024   # ~2.5 GB
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.measure import run_measured  # noqa: E402


def write_synthetic(
    directory: Path, layers: int, experts: int, hidden: int, ffn: int, vocab: int = 32000
) -> int:
    """A random Qwen3-MoE HF checkpoint, one layer per shard; returns its tensor bytes."""
    heads, groups, head_dim = 16, 4, 64
    config = {
        "model_type": "qwen3_moe",
        "architectures": ["Qwen3MoeForCausalLM"],
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": groups,
        "head_dim": head_dim,
        "intermediate_size": 4 * ffn,
        "num_experts": experts,
        "num_experts_per_tok": 8,
        "moe_intermediate_size": ffn,
        "norm_topk_prob": True,
        "vocab_size": vocab,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"},
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "dtype": "bfloat16",
    }
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config))
    weight_map, total = {}, 0

    def shard(name: str, tensors: dict) -> None:
        nonlocal total
        save_file(tensors, str(directory / name))
        weight_map.update({k: name for k in tensors})
        total += sum(t.numel() * 2 for t in tensors.values())

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.bfloat16) * 0.02

    shard(
        "model-embed.safetensors",
        {
            "model.embed_tokens.weight": rand(vocab, hidden),
            "lm_head.weight": rand(vocab, hidden),
            "model.norm.weight": torch.ones(hidden, dtype=torch.bfloat16),
        },
    )
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors = {
            p + "input_layernorm.weight": torch.ones(hidden, dtype=torch.bfloat16),
            p + "post_attention_layernorm.weight": torch.ones(hidden, dtype=torch.bfloat16),
            p + "self_attn.q_proj.weight": rand(heads * head_dim, hidden),
            p + "self_attn.k_proj.weight": rand(groups * head_dim, hidden),
            p + "self_attn.v_proj.weight": rand(groups * head_dim, hidden),
            p + "self_attn.o_proj.weight": rand(hidden, heads * head_dim),
            p + "self_attn.q_norm.weight": torch.ones(head_dim, dtype=torch.bfloat16),
            p + "self_attn.k_norm.weight": torch.ones(head_dim, dtype=torch.bfloat16),
            p + "mlp.gate.weight": rand(experts, hidden),
        }
        for e in range(experts):
            tensors[f"{p}mlp.experts.{e}.gate_proj.weight"] = rand(ffn, hidden)
            tensors[f"{p}mlp.experts.{e}.up_proj.weight"] = rand(ffn, hidden)
            tensors[f"{p}mlp.experts.{e}.down_proj.weight"] = rand(hidden, ffn)
        shard(f"model-layer{i:03d}.safetensors", tensors)
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    return total


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--ffn", type=int, default=768)
    parser.add_argument("--ep", type=int, default=1, help="expert-parallel ranks of the import")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        size = write_synthetic(root / "hf", args.layers, args.experts, args.hidden, args.ffn)
        gb = size / 1e9
        start = time.perf_counter()
        shutil.copytree(root / "hf", root / "copy")
        copy_s = time.perf_counter() - start
        tool = [sys.executable, "tools/convert_checkpoint.py"]
        imported = run_measured(
            [
                *tool,
                "hf-to-megatron",
                "--hf-model",
                str(root / "hf"),
                "--output",
                str(root / "mcore"),
                "--ep",
                str(args.ep),
            ]
        )
        exported = run_measured(
            [
                *tool,
                "megatron-to-hf",
                "--input",
                str(root / "mcore"),
                "--output",
                str(root / "back"),
            ]
        )
    print(f"synthetic Qwen3-MoE: {gb:.2f} GB bf16 ({args.layers} layers x {args.experts} experts)")
    print(f"plain copy of the files:   {copy_s:7.1f} s  {gb / copy_s:6.2f} GB/s")
    for name, run in ((f"hf-to-megatron (EP={args.ep}):", imported), ("megatron-to-hf:", exported)):
        print(
            f"{name:26} {run.seconds:7.1f} s  {gb / run.seconds:6.2f} GB/s  "
            f"peak RSS {run.peak_rss_mb / 1024:.2f} GB"
        )


if __name__ == "__main__":
    main()
