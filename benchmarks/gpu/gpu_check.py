#!/usr/bin/env python3
"""The GPU path end to end on one H100/H200, one step per call (benchmarks/gpu/run_all.sh runs them
in order, each in its own process, and prints PASS/FAIL with its seconds).

Three modes, chosen by the machine: a GPU with TransformerEngine (the TE spec), a GPU without it
(megatron-core's local spec on the GPU: no grouped GEMM, unfused attention, a dense document mask),
and `--cpu-dry-run` (the CPU-capable parts on a CPU). The TE mode has not run yet: the one GPU lent
so far (an H200, 2026-12-04) had no TransformerEngine, and it cannot be carried there (docs/benchmarks.md).

Steps (WORK is a scratch directory):
  build    tiny and proxy (4-layer, full-width Qwen3-30B-A3B) models, bf16 on a GPU; one
           forward+backward of each; asserts the spec's modules (TE: grouped GEMM, TE attention).
  import   a random tiny HF Qwen3-MoE (megatron_agentic/testing/hf_fixtures.py) -> megatron checkpoint (TE keys).
  train    20 steps of the tiny recipe from that checkpoint, bf16 on a GPU; saves.
  export   hides the GPU: reloads the trained checkpoint with the LOCAL spec on CPU and exports HF.
  parity   logits of the exported HF model (transformers, fp32, CPU) against the trained checkpoint
           loaded (a) on CPU with the local spec (fp32) and (b) on the GPU with its spec.
  thd      document masking: packed loss == token-weighted mean of the documents' own losses
           (TE: its packed THD path; otherwise the dense mask; bf16 tolerance on a GPU).
Throughput/MFU and peak memory against the planner: benchmarks/bench_train.py (run_all.sh).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TINY_HF = "hf"
IMPORTED = "imported"
TRAINED = "trained"
EXPORTED = "exported"


def _single_process_env() -> None:
    for key, value in (
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("LOCAL_RANK", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29531"),
    ):
        os.environ.setdefault(key, value)


def _run(command: list[str], env: dict | None = None) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, **(env or {})})


@dataclasses.dataclass(frozen=True)
class Mode:
    gpu: bool  # a GPU is used (not a --cpu-dry-run)
    te: bool  # TransformerEngine's spec (needs the GPU)

    @property
    def name(self) -> str:
        return "TE spec on GPU" if self.te else ("local spec on GPU" if self.gpu else "CPU")


def _mode(dry_run: bool) -> Mode:
    from megatron_agentic.layer_specs import transformer_engine_available

    gpu = torch.cuda.is_available() and not dry_run
    return Mode(gpu=gpu, te=gpu and transformer_engine_available())


LOCAL_MODULES = ("DotProductAttention", "SequentialMLP", "ColumnParallelLinear")
TE_MODULES = ("TEDotProductAttention", "TEGroupedMLP", "TELayerNormColumnParallelLinear")


def step_build(work: Path, mode: Mode) -> None:
    from megatron_agentic import parallel
    from megatron_agentic.model import build_model, get_preset, transformer_config

    dry_run = not mode.gpu
    _single_process_env()
    par = parallel.ParallelConfig()
    for name, model_cfg, seq in (  # the proxy is deeper than tiny, as in the GPU run
        ("tiny", get_preset("tiny"), 256),
        ("proxy", get_preset("qwen3_30b_a3b", num_layers=4 if not dry_run else 3), 4096),
    ):
        parallel.initialize(par)  # one model per initialize/destroy (megatron-core's MoE metrics)
        if dry_run:
            model_cfg = dataclasses.replace(model_cfg, num_experts=8, vocab_size=1024)
            seq = 64
        config = transformer_config(model_cfg, par, bf16=mode.gpu)
        (model,) = build_model(model_cfg, config, seq)
        kinds = {type(module).__name__ for module in model.modules()}
        assert config.moe_grouped_gemm == mode.te, "grouped GEMM is on exactly with TE"
        for kind in TE_MODULES if mode.te else LOCAL_MODULES:
            assert kind in kinds, f"{name}: no {kind} in the model ({sorted(kinds)})"
        if mode.gpu:
            assert next(model.parameters()).dtype == torch.bfloat16, "parameters are not bf16"
        device = "cuda" if mode.gpu else "cpu"
        tokens = torch.randint(0, model_cfg.vocab_size, (1, seq), device=device)
        positions = torch.arange(seq, device=device).unsqueeze(0)
        loss = model(tokens, positions, None, labels=tokens).float().mean()
        loss.backward()
        params = sum(p.numel() for p in model.parameters())
        print(f"{name} ({mode.name}): {params / 1e6:.1f}M parameters, loss {loss.item():.3f}")
        parallel.destroy()


def step_import(work: Path, mode: Mode) -> None:
    from megatron_agentic.testing.hf_fixtures import make_tiny_hf_model

    make_tiny_hf_model(work / TINY_HF)
    _run(
        [sys.executable, "tools/convert_checkpoint.py", "hf-to-megatron"]
        + ["--hf-model", str(work / TINY_HF), "--output", str(work / IMPORTED)]
        + ["--dtype", "bfloat16" if mode.gpu else "float32"]
    )


def step_train(work: Path, mode: Mode) -> None:
    import json

    from megatron_agentic.conversion import model_config_from_hf
    from megatron_agentic.testing.train_fixtures import make_training_data

    blend, _ = make_training_data(work / "data")
    model_cfg = model_config_from_hf(json.loads((work / TINY_HF / "config.json").read_text()))
    overrides = [
        f"model.{key}={json.dumps(value)}"
        for key, value in dataclasses.asdict(model_cfg).items()
        if value is not None and not isinstance(value, dict)
    ]
    overrides += [
        f"data.blend={blend}",
        f"data.tokenizer_model={work / TINY_HF}",
        f"data.cache_dir={work / 'data_cache'}",
        f"checkpoint.load={work / IMPORTED}",
        "checkpoint.load_optimizer=false",
        f"checkpoint.save={work / TRAINED}",
        "checkpoint.save_interval=20",
        f"schedule.train_iters={20 if mode.gpu else 2}",
        "schedule.warmup_iters=1",
        "schedule.decay_style=cosine",
        "training.eval_interval=0",
        f"optimizer.bf16={'true' if mode.gpu else 'false'}",
    ]
    _run(
        [sys.executable, "-m", "megatron_agentic.train"]
        + ["--config", "examples/recipes/tiny_stage1.yaml", *overrides]
    )


def step_export(work: Path, mode: Mode) -> None:
    _run(
        [sys.executable, "tools/convert_checkpoint.py", "megatron-to-hf"]
        + ["--input", str(work / TRAINED), "--output", str(work / EXPORTED), "--dtype", "float32"],
        env={"CUDA_VISIBLE_DEVICES": ""},  # the local spec on CPU reads the GPU's checkpoint
    )


def _logits_on_this_device(work: Path) -> torch.Tensor:
    from megatron_agentic.testing.conversion import megatron_logits as _megatron_logits
    from megatron_agentic.testing.distributed import run_distributed

    (logits,) = run_distributed(_megatron_logits, 1, str(work / TRAINED), {})
    return torch.tensor(logits)


def step_parity(work: Path, mode: Mode) -> None:
    from megatron_agentic.testing.conversion import hf_logits

    expected = hf_logits(work / EXPORTED)
    if mode.gpu:  # (b) the GPU's spec, bf16 weights, on the GPU
        gpu = _logits_on_this_device(work)
        error = (gpu - expected).abs().max() / expected.abs().max()
        print(f"{mode.name} vs HF: max relative error {error:.2e}")
        assert error < 3e-2, f"{mode.name}: logits differ from the exported HF model's"
    # (a) local spec on CPU, in a process that cannot see the GPU
    _run(
        [sys.executable, __file__, "parity-cpu", "--work", str(work)],
        env={"CUDA_VISIBLE_DEVICES": ""},
    )


def step_parity_cpu(work: Path, mode: Mode) -> None:
    from megatron_agentic.testing.conversion import hf_logits

    expected = hf_logits(work / EXPORTED)
    cpu = _logits_on_this_device(work)
    error = (cpu - expected).abs().max() / expected.abs().max()
    print(f"local spec on CPU vs HF: max relative error {error:.2e}")
    # the checkpoint holds bf16 weights; HF got the same values exported to fp32
    assert error < 1e-3, "local-spec logits differ from the exported HF model's"


def step_thd(work: Path, mode: Mode) -> None:
    from megatron_agentic.testing.distributed import run_distributed

    (result,) = run_distributed(_thd_losses, 1, str(work / "thd"), mode, timeout=600)
    packed, per_document, documents = result
    path = "TE's THD path" if mode.te else f"dense mask, {mode.name}"
    print(
        f"packed loss {packed:.5f} ({path}) vs per-document {per_document:.5f} ({documents} docs)"
    )
    assert documents >= 3
    assert abs(packed - per_document) <= 2e-2 * abs(per_document), "document masking broken"


def _thd_losses(root: str, mode: Mode):
    from megatron_agentic import document_masking, parallel
    from megatron_agentic.model import build_model, get_preset, transformer_config
    from megatron_agentic.testing.masking import SEQ
    from megatron_agentic.testing.masking import packed_dataset as _dataset

    par = parallel.ParallelConfig()
    parallel.initialize(par)
    model_cfg = get_preset("tiny", vocab_size=512)
    (model,) = build_model(model_cfg, transformer_config(model_cfg, par, bf16=mode.gpu), SEQ)
    model.eval()
    options = dict(
        reset_position_ids=True,
        reset_attention_mask=True,
        eod_mask_loss=True,
        create_attention_mask=not mode.te,
    )
    Path(root).mkdir(parents=True, exist_ok=True)
    dataset, eod = _dataset(Path(root), options)
    batch = document_masking.collate([dataset[2]], packed=mode.te)
    batch = {key: value.cuda() for key, value in batch.items()}  # stays on CPU there (cpu_runtime)
    with torch.no_grad():
        losses = model(
            batch["tokens"],
            batch["position_ids"],
            labels=batch["labels"],
            **document_masking.model_kwargs(batch),
        ).float()
        packed = float((losses * batch["loss_mask"]).sum() / batch["loss_mask"].sum())
        tokens = batch["tokens"][0]
        ends = (torch.nonzero(tokens == eod).flatten() + 1).tolist()
        bounds = [0] + [e for e in ends if e < SEQ] + [SEQ]
        total = count = 0.0
        for start, end in zip(bounds[:-1], bounds[1:]):
            doc = tokens[start:end].unsqueeze(0)
            alone = model(
                doc,
                torch.arange(end - start, device=doc.device).unsqueeze(0),
                None,
                labels=batch["labels"][:, start:end],
            ).float()
            mask = (doc != eod).float()
            total += float((alone * mask).sum())
            count += float(mask.sum())
    parallel.destroy()
    return packed, total / count, len(bounds) - 1


STEPS = {
    "build": step_build,
    "import": step_import,
    "train": step_train,
    "export": step_export,
    "parity": step_parity,
    "parity-cpu": step_parity_cpu,
    "thd": step_thd,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument(
        "--cpu-dry-run", action="store_true", help="run the step's CPU-capable parts (no TE)"
    )
    args = parser.parse_args(argv)
    if not (args.cpu_dry_run or args.step == "parity-cpu" or torch.cuda.is_available()):
        parser.error("no GPU here: run with --cpu-dry-run")
    args.work.mkdir(parents=True, exist_ok=True)
    STEPS[args.step](args.work, _mode(args.cpu_dry_run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
