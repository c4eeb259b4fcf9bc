"""The CPU quickstart: the whole Agentic CPT pipeline end to end, on data and models it builds.

    bash scripts/quickstart.sh [--output runs/quickstart] [--smoke]

bundled corpus -> open-world memory -> FAS questions, planning and reasoning -> HAS -> dedup,
decontamination, stats -> a tokenizer trained on the corpus -> tools/preprocess_data.py ->
Stage-1-shaped training (2 gloo ranks, EP=2), stopped half-way and resumed -> Stage-2-shaped
training (YaRN, 4x longer sequences, TP=2) from the stage-1 checkpoint -> export to Hugging Face
-> transformers loads it and generates -> the agentic evaluation of the exported checkpoint on
held-out synthesized questions (`python -m data_synthesis.eval`: the ReAct agent over the
offline environment), beside the stage-1 checkpoint's score -> a summary table. Tiny models
score near zero; the point is the path, which on a cluster runs the same against `vllm serve`.

Every step is a command of the repository, printed before it runs, with its output in
OUT/logs/<step>.log. Everything lands under OUT; a rerun reuses the steps already finished
(OUT/.done/<step>.json), so an interrupted quickstart continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data_synthesis" / "data" / "corpus.jsonl"
BLENDS = {  # stage mixtures, as in the paper: stage 1 FAS-heavy, stage 2 mostly HAS
    "stage1": {"fas": 40, "has": 30, "general": 30},
    "stage2": {"has": 70, "fas": 20, "general": 10},
}


@dataclass
class Step:
    """One command of the pipeline and what it leaves behind."""

    name: str
    command: list[str]
    artifact: Path


def plan(out: Path, smoke: bool) -> list[Step]:
    """The commands, in order."""
    py = sys.executable
    torchrun = [
        py,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(29400 + os.getpid() % 500),
        "-m",
        "megatron_agentic.train",
    ]
    data = out / "data"
    stage1_iters, stage2_iters = (4, 4) if smoke else (40, 10)
    common = [f"data.tokenizer_model={out / 'tokenizer'}", "logging.log_interval=1"]
    stage1 = [
        *torchrun,
        "--config",
        str(REPO / "examples/recipes/tiny_stage1.yaml"),
        *common,
        f"data.blend={data / 'stage1.yaml'}",
        f"checkpoint.save={out / 'checkpoints/stage1'}",
        "parallel.ep=2",
        f"schedule.train_iters={stage1_iters}",
        f"checkpoint.save_interval={stage1_iters // 2}",
    ]
    steps = [
        Step(
            "synthesize",
            [py, "-m", "data_synthesis", "pipeline", "--output", str(out / "synthesis")],
            out / "synthesis" / "final",
        ),
        Step(
            "tokenizer",
            [
                py,
                str(REPO / "tools/train_tokenizer.py"),
                "--input",
                str(CORPUS),
                str(out / "synthesis/final/fas.jsonl"),
                str(out / "synthesis/final/has.jsonl"),
                "--output",
                str(out / "tokenizer"),
                "--vocab-size",
                "512",
            ],
            out / "tokenizer",
        ),
    ]
    sources = {
        "fas": out / "synthesis/final/fas.jsonl",
        "has": out / "synthesis/final/has.jsonl",
        "general": CORPUS,
    }
    for name, source in sources.items():
        steps.append(
            Step(
                f"preprocess_{name}",
                [
                    py,
                    str(REPO / "tools/preprocess_data.py"),
                    "--input",
                    str(source),
                    "--output-prefix",
                    str(data / name),
                    "--tokenizer-type",
                    "HuggingFaceTokenizer",
                    "--tokenizer-model",
                    str(out / "tokenizer"),
                    "--append-eod",
                    "--workers",
                    "2",
                ],
                data / f"{name}_text_document.bin",
            )
        )
    steps += [
        Step(
            "train_stage1_first_half",
            [*stage1, f"training.exit_interval={stage1_iters // 2}"],
            out / "checkpoints/stage1",
        ),
        Step("train_stage1_resumed", stage1, out / "checkpoints/stage1"),
        Step(
            "train_stage2",
            [
                *torchrun,
                "--config",
                str(REPO / "examples/recipes/tiny_stage2.yaml"),
                *common,
                f"data.blend={data / 'stage2.yaml'}",
                f"checkpoint.load={out / 'checkpoints/stage1'}",
                f"checkpoint.save={out / 'checkpoints/stage2'}",
                f"schedule.train_iters={stage2_iters}",
                f"schedule.warmup_iters={stage2_iters // 5}",
                f"schedule.wsd_decay_iters={stage2_iters // 2}",
                f"checkpoint.save_interval={stage2_iters}",
            ],
            out / "checkpoints/stage2",
        ),
        Step(
            "export_hf",
            [
                py,
                str(REPO / "tools/convert_checkpoint.py"),
                "megatron-to-hf",
                "--input",
                str(out / "checkpoints/stage2"),
                "--output",
                str(out / "hf"),
            ],
            out / "hf",
        ),
        Step(
            "generate",
            [py, "-m", "megatron_agentic.quickstart", "--generate", str(out / "hf")],
            out / "hf",
        ),
        Step(
            "export_stage1_hf",
            [
                py,
                str(REPO / "tools/convert_checkpoint.py"),
                "megatron-to-hf",
                "--input",
                str(out / "checkpoints/stage1"),
                "--output",
                str(out / "hf_stage1"),
            ],
            out / "hf_stage1",
        ),
    ]
    for name, label, model in (
        ("evaluate_stage1", "stage 1", out / "hf_stage1"),
        ("evaluate_final", "final", out / "hf"),
    ):
        steps.append(Step(name, evaluate_command(out, model, label, smoke), out / "eval" / label))
    return steps


def evaluate_command(out: Path, model: Path, label: str, smoke: bool) -> list[str]:
    """The agentic evaluation of one exported checkpoint on the held-out synthesized questions
    (their source documents never reached the training data), through transformers here; on a
    cluster the same command takes `--base-url` of a `vllm serve` of the export."""
    return [
        sys.executable,
        "-m",
        "data_synthesis.eval",
        "run",
        "--backend",
        "transformers",
        "--model",
        str(model),
        "--label",
        label,
        "--questions",
        str(out / "synthesis/eval/heldout_questions.jsonl"),
        "--limit",
        "3" if smoke else "10",
        "--max-turns",
        "2",
        "--max-tokens",
        "24",
        "--no-llm-judge",  # a tiny model cannot judge; a real run uses the served model
        "--output",
        str(out / "eval" / label),
    ]


def write_blends(data: Path) -> None:
    for stage, weights in BLENDS.items():
        lines = ['split: "95,5,0"', "datasets:"] + [
            f"  - {{name: {name}, prefix: {name}_text_document, weight: {w}}}"
            for name, w in weights.items()
        ]
        (data / f"{stage}.yaml").write_text("\n".join(lines) + "\n")


def run_step(step: Step, out: Path) -> dict:
    """Run one step (or reuse it), logging to OUT/logs/<name>.log; returns its summary."""
    done = out / ".done" / f"{step.name}.json"
    if done.exists():
        print(f"[quickstart] {step.name}: done before, reused ({step.artifact})", flush=True)
        return json.loads(done.read_text())
    print(f"[quickstart] {step.name}: $ {' '.join(step.command)}", flush=True)
    log = out / "logs" / f"{step.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            step.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for line in proc.stdout:
            handle.write(line)
            if re.match(
                r"(iteration|validation|saved|resumed|loaded|done|exported|imported|"
                r"tokenizer|generated|error|\[eval\])",
                line,
            ):
                print(f"    {line.rstrip()}", flush=True)
        proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"[quickstart] {step.name} failed (exit {proc.returncode}); see {log}")
    losses = [float(x) for x in re.findall(r"\| lm loss ([\d.]+) \|", log.read_text())]
    summary = {
        "step": step.name,
        "seconds": round(time.perf_counter() - start, 1),
        "artifact": str(step.artifact),
        "losses": losses,
    }
    done.parent.mkdir(exist_ok=True)
    done.write_text(json.dumps(summary))
    return summary


def generate(hf_dir: str) -> None:
    """Load the exported model with transformers and generate a few tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    prompt = "Question: What is the capital of Austria?"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    output = model.generate(ids, max_new_tokens=12, do_sample=False)
    text = tokenizer.decode(output[0, ids.shape[1] :])
    print(f"generated by {type(model).__name__} from {hf_dir}: {prompt!r} -> {text!r}")


def summary_table(out: Path, results: list[dict]) -> str:
    stats = json.loads((out / "synthesis/final/stats.json").read_text())
    rows = [("step", "seconds", "result", "artifact")]
    for r in results:
        result = ""
        if r["losses"]:
            result = (
                f"lm loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f} ({len(r['losses'])} steps)"
            )
        rows.append((r["step"], f"{r['seconds']:.1f}", result, r["artifact"]))
    docs = ", ".join(f"{k}: {v}" for k, v in stats["documents_by_kind"].items())
    questions = stats["questions"]
    if isinstance(questions, dict):
        questions = (
            f"{sum(questions.values())} ({', '.join(f'{k} {v}' for k, v in questions.items())})"
        )
    tokens = _dataset_tokens(out / "data")
    width = [max(len(str(row[i])) for row in rows) for i in range(4)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, width)) for row in rows]
    lines += [
        "",
        f"synthesized documents: {docs}; questions: {questions}; held out for evaluation: "
        f"{stats.get('heldout_questions', 0)} questions; HAS Incorrect share: "
        f"{stats.get('has_incorrect_share')}",
        *evaluation_lines(out),
        f"tokens per dataset: {tokens}",
        f"everything is under {out}",
    ]
    return "\n".join(lines)


def evaluation_lines(out: Path) -> list[str]:
    """The agentic evaluation of the final checkpoint beside the stage-1 checkpoint's."""
    from data_synthesis.eval.report import compare

    runs = [out / "eval" / "stage 1", out / "eval" / "final"]
    if not all((run / "summary.json").exists() for run in runs):
        return []
    return ["", "agentic evaluation on held-out synthesized questions:", compare(*runs)]


def _dataset_tokens(data: Path) -> dict:
    from megatron_agentic.data.indexed import dataset_stats

    return {name: dataset_stats(data / f"{name}_text_document").tokens for name in BLENDS["stage1"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Agentic CPT end to end on CPU (the quickstart)")
    parser.add_argument("--output", default=str(REPO / "runs" / "quickstart"))
    parser.add_argument("--smoke", action="store_true", help="fewest training steps (CI)")
    parser.add_argument("--generate", metavar="HF_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        generate(args.generate)
        return 0
    out = Path(args.output).resolve()
    (out / "data").mkdir(parents=True, exist_ok=True)
    write_blends(out / "data")
    print(f"[quickstart] output directory: {out}", flush=True)
    results = [run_step(step, out) for step in plan(out, args.smoke)]
    print("\n" + summary_table(out, results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
