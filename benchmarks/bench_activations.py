#!/usr/bin/env python3
"""Check the planner's activation-memory formula against what megatron-core really keeps, on CPU.

A tiny-but-wide Qwen3-MoE (2 layers, hidden 256, 4 heads of 64, 2 query groups, 8 experts top-2,
expert FFN 256) runs one forward and backward at 2K-8K tokens, CP=1 or 2 (gloo ranks), with no,
full or selective recompute. Two figures per run, on rank 0:
- kept: bytes autograd saves for the backward inside the decoder (torch's saved_tensors_hooks;
  storages counted once, parameters excluded; the layers and the final norm), per layer - against
  the planner's `activation_elements_per_token(flash=False)` x tokens x 4 bytes (float32 here;
  megatron-core's local layers: unfused attention and SwiGLU; at CP>1 the attention is
  cp_attention's SDPA, see `kept` in `_planner`) plus the final norm's input and output;
- peak: the rise of the process's peak RSS (Linux VmHWM, reset before the step) over the RSS
  before it - against the planner's activation total for that layout (layers x kept + one layer's
  working set). RSS also holds gradients of the weights and allocator slack, so it is an upper bound.

    python benchmarks/bench_activations.py                      # all rows (~5 min on 2 cores)
    python benchmarks/bench_activations.py --tokens 2048 --cp 1 --recompute none
"""

from __future__ import annotations

import argparse
import itertools

import torch

SHAPE = dict(
    num_layers=2,
    hidden_size=256,
    num_attention_heads=4,
    num_query_groups=2,
    head_dim=64,
    num_experts=8,
    moe_router_topk=2,
    moe_ffn_hidden_size=256,
    vocab_size=512,
    max_position_embeddings=8192,
)
RECOMPUTES = {
    "none": {},
    "full": dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1),
    # moe_act needs grouped GEMM and layernorm TE's FP8 state manager: GPU only, not measured here
    "selective[layernorm]": dict(
        recompute_granularity="selective", recompute_modules=["layernorm"]
    ),
    # core_attn fails the same way in megatron-core 0.19.2 without TE (FP8GlobalStateManager)
    "selective[core_attn]": dict(
        recompute_granularity="selective", recompute_modules=["core_attn"]
    ),
    "selective[moe]": dict(recompute_granularity="selective", recompute_modules=["moe"]),
}


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure(tokens: int, cp: int, recompute: str) -> dict:
    from megatron.core import parallel_state

    from megatron_agentic import parallel
    from megatron_agentic.model import build_model, get_preset, transformer_config
    from megatron_agentic.train_step import context_parallel_slice

    par = parallel.ParallelConfig(cp=cp)
    parallel.initialize(par)
    model_cfg = get_preset("tiny", **SHAPE)
    config = transformer_config(model_cfg, par, **RECOMPUTES[recompute])
    (model,) = build_model(model_cfg, config, tokens)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ids = torch.randint(0, SHAPE["vocab_size"], (1, tokens + 1), generator=torch.Generator())
    batch = context_parallel_slice(
        {
            "tokens": ids[:, :-1],
            "labels": ids[:, 1:],
            "position_ids": torch.arange(tokens).unsqueeze(0),
        }
    )
    seen: dict[int, int] = {}
    inside = [False]

    def pack(tensor):
        storage = tensor.untyped_storage()
        if inside[0] and storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    decoder = model.decoder
    decoder.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True))
    decoder.register_forward_hook(lambda *_: inside.__setitem__(0, False))
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM (peak RSS) to the current RSS
    before = _rss_kb("VmRSS")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"]).sum()
    loss.backward()
    peak = _rss_kb("VmHWM") - before
    rank = parallel_state.get_context_parallel_rank()
    parallel.destroy()
    return {"kept": sum(seen.values()), "peak": peak * 1024, "rank": rank}


def _planner(tokens: int, cp: int, recompute: str) -> tuple[float, float]:
    from megatron_agentic.model import get_preset
    from megatron_agentic.planner import Layout, activation_elements_per_token, activation_items

    model_cfg = get_preset("tiny", **SHAPE)
    if recompute.startswith("selective"):
        modules = tuple(recompute[len("selective[") : -1].split(","))
        layout = Layout(cp=cp, recompute="selective", recompute_modules=modules)
    else:
        layout = Layout(cp=cp, recompute=recompute)
    local = tokens // cp
    none = Layout(cp=cp, recompute="none")

    def kept(layout) -> float:
        """Bytes per layer: the planner's local-layer (flash=False) items, where CP>1 runs
        megatron_agentic.cp_attention instead of megatron-core's unfused attention: its SDPA kernel
        keeps no probabilities and no GQA-expanded K/V, but keeps its float [s_local, s] mask."""
        elements = activation_elements_per_token(model_cfg, layout, tokens, flash=False)
        if cp > 1 and layout.recompute != "full":
            items = activation_items(model_cfg, tokens, flash=False)
            if "core_attn" not in layout.recompute_modules:
                elements -= items["attention probabilities (unfused)"][0]
                elements -= items["GQA-expanded k, v (unfused)"][0]
            elements += tokens  # the mask row of each local query, float32
        return 4 * local * elements

    per_layer, working = kept(layout), kept(none)
    final_norm = 4 * local * 2 * SHAPE["hidden_size"]  # the decoder's final norm: input, output
    return per_layer + final_norm / SHAPE["num_layers"], per_layer * SHAPE["num_layers"] + working


def main(argv=None) -> int:
    from megatron_agentic.local_ranks import run_on_ranks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--cp", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--recompute", nargs="+", default=list(RECOMPUTES), choices=RECOMPUTES)
    args = parser.parse_args(argv)
    print(
        f"{'tokens':>6} {'cp':>2} {'recompute':<30} {'kept/layer MB':>13} {'planner MB':>10} "
        f"{'err':>6} {'peak MB':>8} {'planner MB':>10} {'err':>6}"
    )
    for tokens, cp, recompute in itertools.product(args.tokens, args.cp, args.recompute):
        if tokens == 8192 and cp == 1:
            continue  # 4 x 8192^2 fp32 probabilities per layer: too large for a shared 2-core box
        try:
            results = run_on_ranks(_measure, cp, tokens, cp, recompute, timeout=900)
        except RuntimeError as error:  # e.g. selective recompute's TE-only checkpoint helpers
            print(f"{tokens:>6} {cp:>2} {recompute:<30} not measurable here: {str(error)[-90:]!r}")
            continue
        measured = next(r for r in results if r["rank"] == 0)
        per_layer, total = _planner(tokens, cp, recompute)
        kept = measured["kept"] / SHAPE["num_layers"]
        print(
            f"{tokens:>6} {cp:>2} {recompute:<30} {kept / 2**20:>13.1f} {per_layer / 2**20:>10.1f} "
            f"{(per_layer - kept) / kept:>+6.0%} {measured['peak'] / 2**20:>8.1f} "
            f"{total / 2**20:>10.1f} {(total - measured['peak']) / measured['peak']:>+6.0%}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
