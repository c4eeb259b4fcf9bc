"""Score a served model as an agent on question sets with gold answers.

    # a model served by vLLM (`vllm serve OUT/hf --served-model-name ckpt`) or any
    # OpenAI-compatible URL; question files: ours, BrowseComp-style, GAIA-style (JSONL)
    python -m data_synthesis.eval run --base-url http://localhost:8000/v1 --model ckpt \
        --questions OUT/eval/heldout_questions.jsonl browsecomp.jsonl --samples 4 \
        --output runs/eval/ckpt [--judge-base-url URL --judge-model NAME] [--label final]
    # without a server: a local HF folder through transformers
    python -m data_synthesis.eval run --backend transformers --model OUT/hf --questions ...
    # two runs side by side
    python -m data_synthesis.eval compare runs/eval/base runs/eval/final
    # the held-out split of synthesized questions (by source document)
    python -m data_synthesis.eval heldout --questions questions.jsonl --share 0.1 --output DIR

Output: OUT/items-<set>.jsonl (one judged rollout per question and sample, resumable: a rerun
continues), OUT/summary.json and the table on stdout. The judge defaults to the served model;
normalised matching (data_synthesis.answers) always runs first. A model that is down, replies
with malformed tool calls, loops or exceeds its context makes that rollout fail with the reason
(counted in the table); the run goes on. A question file with a missing field stops the run
before it starts, naming file:line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from data_synthesis.agent.loop import AgentConfig, LLMPolicy
from data_synthesis.agent.rollouts import read_rollouts, rollout_to_file
from data_synthesis.config import BackendConfig
from data_synthesis.environment.executor import Environment, EnvironmentConfig
from data_synthesis.environment.registry import ToolRegistry
from data_synthesis.eval.heldout import split_questions, write_heldout_docs
from data_synthesis.eval.questions import QuestionFileError, load_questions
from data_synthesis.eval.report import compare, score, table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_synthesis.eval")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="evaluate a model on question sets")
    run.add_argument("--questions", nargs="+", required=True, help="JSONL/JSON question files")
    run.add_argument("--output", required=True)
    run.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    run.add_argument("--model", required=True, help="served model name, or a local HF folder")
    run.add_argument("--backend", choices=["openai", "transformers", "vllm"], default=None)
    run.add_argument("--label", default=None, help="name of this checkpoint in comparisons")
    run.add_argument("--samples", type=int, default=1, help="k rollouts per question (Pass@k)")
    run.add_argument("--temperature", type=float, default=None, help="default 0, 0.7 if k > 1")
    run.add_argument("--max-tokens", type=int, default=512, help="per model reply")
    run.add_argument("--max-turns", type=int, default=8)
    run.add_argument("--call-timeout", type=float, default=120.0, help="seconds per model call")
    run.add_argument("--request-retries", type=int, default=2)
    run.add_argument("--max-prompt-chars", type=int, default=24000)
    run.add_argument("--concurrency", type=int, default=8)
    run.add_argument("--limit", type=int, default=None, help="first N questions of each file")
    run.add_argument("--judge-base-url", default=None, help="default: the served model's URL")
    run.add_argument("--judge-model", default=None, help="default: the served model")
    run.add_argument("--no-llm-judge", action="store_true", help="normalised matching only")
    run.add_argument("--tools", default=None, help="YAML with a `tools:` list (default tools)")
    run.add_argument("--corpus", action="append", default=None, help="JSONL corpus (repeat)")
    run.add_argument("--cache-dir", default=EnvironmentConfig.cache_dir)
    run.add_argument(
        "--shard-mb",
        type=int,
        default=EnvironmentConfig.index_shard_mb,
        help="MiB of corpus per index shard: a synthesis run's environment.index_shard_mb "
        "shares its index (8192 for configs/vllm_cluster.yaml)",
    )
    run.add_argument("--seed", type=int, default=0)
    cmp = sub.add_parser("compare", help="two evaluation runs side by side")
    cmp.add_argument("runs", nargs=2)
    held = sub.add_parser("heldout", help="split synthesized questions by source document")
    held.add_argument("--questions", required=True)
    held.add_argument("--share", type=float, default=0.1)
    held.add_argument("--seed", type=int, default=0)
    held.add_argument("--output", required=True)
    return parser


def _backend(args, model: str, base_url: str | None, max_tokens: int, temperature: float):
    from data_synthesis.llm import build_backend

    kind = args.backend or ("openai" if base_url else "transformers")
    config = BackendConfig(
        type=kind,
        model=model,
        base_url=base_url,
        temperature=temperature,
        max_tokens=max_tokens,
        batch_size=args.concurrency,
    )
    for key, value in (
        ("request_timeout_s", args.call_timeout),
        ("request_retries", args.request_retries),
    ):
        if hasattr(config, key):
            setattr(config, key, value)
    return build_backend(config)


def run(args) -> int:
    try:
        sets = {Path(p).stem: load_questions(p, args.limit) for p in args.questions}
    except QuestionFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    temperature = (
        args.temperature if args.temperature is not None else (0.7 if args.samples > 1 else 0.0)
    )
    model = _backend(args, args.model, args.base_url, args.max_tokens, temperature)
    judge = None
    if not args.no_llm_judge:
        judge_url = args.judge_base_url or args.base_url
        if args.judge_model or args.judge_base_url:
            judge = _backend(args, args.judge_model or args.model, judge_url, 128, 0.0)
        else:
            judge = model  # the served model judges itself by default (as the issue asks)
    config = EnvironmentConfig(cache_dir=args.cache_dir, index_shard_mb=args.shard_mb)
    if args.corpus:
        config.corpora = args.corpus
    env = Environment(ToolRegistry.from_config(args.tools), config)
    agent = AgentConfig(
        max_turns=args.max_turns,
        call_timeout_s=args.call_timeout,
        max_prompt_chars=args.max_prompt_chars,
        concurrency=args.concurrency,
    )
    policy = LLMPolicy(model, env.registry, agent, seed=args.seed)
    label = args.label or args.model
    summary = {"label": label, "model": args.model, "base_url": args.base_url, "sets": {}}
    started = time.perf_counter()
    for name, questions in sets.items():
        print(f"[eval] {name}: {len(questions)} questions x {args.samples} samples", flush=True)
        path = rollout_to_file(
            questions,
            out / f"items-{name}.jsonl",
            policy,
            env,
            agent,
            judge=judge,
            samples=args.samples,
            batch_size=max(1, args.concurrency),
            seed=args.seed,
            policy_name=label,
            log=lambda line, n=name: print(f"[eval] {n}: {line}", flush=True),
        )
        summary["sets"][name] = score(read_rollouts(path))
    policy.close()
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(
        f"\n[eval] {label} ({args.model})\n{table(summary)}\n[eval] per-item records and "
        f"summary.json in {out}",
        flush=True,
    )
    return 0


def heldout(args) -> int:
    questions = [
        json.loads(line) for line in Path(args.questions).read_text().splitlines() if line.strip()
    ]
    train, held = split_questions(questions, args.share, args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train_questions", train), ("heldout_questions", held)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    docs = {d for q in questions for d in (q.get("source_docs") or [])}
    hidden = write_heldout_docs(docs, args.share, args.seed, out / "heldout_docs.txt")
    print(
        f"[eval] {len(held)} held-out questions ({hidden} held-out documents), {len(train)} for training -> {out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "compare":
        print(compare(Path(args.runs[0]), Path(args.runs[1])))
        return 0
    if args.command == "heldout":
        return heldout(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
