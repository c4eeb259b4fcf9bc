"""Run the FAS methods in one process on a corpus and report per-stage counts, reject reasons,
multi-source records, samples of each output kind and the memory stage's throughput.

It drives the stage methods directly (memory -> records -> questions -> planning -> reasoning),
without the sharded engine, so it measures the methods alone. The heuristic baseline by
default; `--config` with an LLM backend runs the LLM methods.

    python scripts/synthesis_method_report.py --input data_synthesis/data/corpus.jsonl \
        --samples 15 --json runs/method_report.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import time
from pathlib import Path

from data_synthesis.config import load_pipeline_config
from data_synthesis.fas import planning, questions, reasoning
from data_synthesis.llm import build_backend
from data_synthesis.memory import (
    HeuristicExtractor,
    InMemoryView,
    LLMExtractor,
    build_records,
    count_multi_source,
)
from data_synthesis.stage_api import Counters, StageContext


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def baseline_inputs(documents: list[dict], config) -> dict:
    """The heuristic baseline's memory records and questions: inputs for an LLM stage whose
    previous LLM stage produced nothing (a weak model), so that every stage still runs."""
    out = run(documents, config, None)
    return {"records": out["records"], "questions": out["questions"]}


def run(documents: list[dict], config, backend, fallback: dict | None = None) -> dict:
    """All FAS stages on `documents`; returns outputs, counters and timings. With `fallback`
    (baseline_inputs), a stage whose input came out empty gets the baseline's instead, and the
    counters say so ("input from the heuristic baseline")."""
    # imported here, not at the top: vLLM's CPU workers re-import this script's top level, and
    # the environment package pulls in bm25s -> numba, whose llvmlite objects break vLLM's
    # kernel scan at worker start
    from data_synthesis.environment.registry import ToolRegistry

    llm = backend is not None
    counters = Counters()
    tools = ToolRegistry.from_config(None)

    def ctx(stage, memory=None):
        return StageContext(
            config=config,
            llm=backend,
            tools=tools,
            memory=memory,
            counters=counters,
            seed=config.seed,
            stage=stage,
        )

    timings = {}
    start, cpu = time.perf_counter(), cpu_seconds()
    statements = (LLMExtractor() if llm else HeuristicExtractor()).run(documents, ctx("memory"))
    timings["memory"] = (time.perf_counter() - start, cpu_seconds() - cpu)
    records = build_records(statements)
    if not records and fallback:
        counters.add("questions", "input from the heuristic baseline")
        records = fallback["records"]
    view = InMemoryView(records)
    out = {"statements": statements, "records": records}
    stages = [
        ("questions", questions.LLMQuestions if llm else questions.HeuristicQuestions, records),
        ("planning", planning.LLMPlanning if llm else planning.HeuristicPlanning, None),
        ("reasoning", reasoning.LLMReasoning if llm else reasoning.HeuristicReasoning, None),
    ]
    for name, method, items in stages:
        start, cpu = time.perf_counter(), cpu_seconds()
        if items is None:
            items = out["questions"]
            if not items and fallback:
                counters.add(name, "input from the heuristic baseline")
                items = fallback["questions"]
        out[name] = method().run(items, ctx(name, view))
        timings[name] = (time.perf_counter() - start, cpu_seconds() - cpu)
    for name in ("statements", "questions", "planning", "reasoning"):
        if not out[name]:
            counters.reject(name, "stage produced nothing")
    out["counters"], out["timings"] = counters.to_dict(), timings
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--config")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument(
        "--fallback",
        help="'baseline' (compute it here) or a JSON file of baseline_inputs(): inputs for an "
        "LLM stage whose previous stage produced nothing",
    )
    parser.add_argument("--write-baseline", help="write baseline_inputs() to this file and exit")
    args = parser.parse_args(argv)
    config = load_pipeline_config(args.config)
    documents = [json.loads(line) for line in Path(args.input).read_text().splitlines() if line]
    documents = documents[: args.limit] if args.limit else documents
    if args.write_baseline:
        Path(args.write_baseline).write_text(json.dumps(baseline_inputs(documents, config)))
        return 0
    fallback = None
    if args.fallback == "baseline":
        fallback = baseline_inputs(documents, config)
    elif args.fallback:
        fallback = json.loads(Path(args.fallback).read_text())
    out = run(documents, config, build_backend(config.backend), fallback)
    wall, cpu = out["timings"]["memory"]
    summary = {
        "documents": len(documents),
        "statements": len(out["statements"]),
        "value_types": _count(s["value"]["type"] for s in out["statements"]),
        # names or values holding markdown's marks ("a [Runner](https"): text read as prose?
        "statements_with_markup": sum(
            bool(re.search(r"[\[\]`*#|]", f"{s['entity_name']} {s['value']['text']}"))
            for s in out["statements"]
        ),
        "records": len(out["records"]),
        "records_with_2plus_sources": count_multi_source(out["records"]),
        "questions": _count(q["style"] for q in out["questions"]),
        "planning_documents": len(out["planning"]),
        "reasoning_documents": len(out["reasoning"]),
        "counters": out["counters"],
        "seconds": {k: round(v[0], 2) for k, v in out["timings"].items()},
        "memory_docs_per_cpu_second": round(len(documents) / max(cpu, 1e-9), 1),
        "all_stages_docs_per_cpu_second": round(
            len(documents) / max(sum(v[1] for v in out["timings"].values()), 1e-9), 1
        ),
    }
    print(json.dumps(summary, indent=1))
    rng = random.Random(0)
    for kind, items, show in [
        (
            "statement",
            out["statements"],
            lambda s: (
                f"{s['entity_name']} | {s['relation']} | "
                f"{s['value']['type']}: {s['value']['text']} | time={s['time']}  <- {s['sentence'][:90]}"
            ),
        ),
        (
            "question",
            out["questions"],
            lambda q: f"[{q['style']}] {q['question']} -> {q['answer']}",
        ),
        ("planning", out["planning"], lambda d: d["text"].split("Question: ", 1)[1]),
        ("reasoning", out["reasoning"], lambda d: d["text"]),
    ]:
        print(f"\n=== {kind}: {min(args.samples, len(items))} of {len(items)} ===")
        for item in rng.sample(items, min(args.samples, len(items))):
            print(show(item), "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0 if out["reasoning"] and out["planning"] or fallback is not None else 1


def _count(values) -> dict:
    counts: dict = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


if __name__ == "__main__":
    raise SystemExit(main())
