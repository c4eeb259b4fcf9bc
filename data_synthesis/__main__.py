"""Command line: `python -m data_synthesis <stage> --output DIR [...]`, or `pipeline` for all.

    python -m data_synthesis pipeline --output runs/synth                 # CPU default, bundled corpus
    python -m data_synthesis pipeline --input raw.jsonl --output runs/synth --config gpu.yaml
    python -m data_synthesis planning --output runs/synth --shard 3 --num-shards 64   # one SLURM task

Every stage is resumable: rerun the same command after a crash and finished shards and items are
reused. With several shards, run all shards of a stage before the next stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data_synthesis.config import load_pipeline_config
from data_synthesis.llm import build_backend
from data_synthesis.shards import read_jsonl
from data_synthesis.stages import (
    STAGES,
    Stage,
    run_finalize,
    run_has,
    run_memory,
    run_planning,
    run_questions,
    run_reasoning,
)

BUNDLED_CORPUS = Path(__file__).resolve().parent / "data" / "corpus.jsonl"


def run_stage(name: str, st: Stage, args) -> None:
    if name == "memory":
        run_memory(st, read_jsonl(args.input))
    elif name == "questions":
        run_questions(st)
    elif name == "planning":
        run_planning(st)
    elif name == "reasoning":
        run_reasoning(st)
    elif name == "has":
        run_has(st, args.trajectories)
    else:
        stats = run_finalize(st)
        print(json.dumps(stats, indent=2, sort_keys=True))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_synthesis", description=__doc__.split("\n")[0]
    )
    parser.add_argument("stage", choices=[*STAGES, "pipeline"])
    parser.add_argument("--output", required=True, help="output directory of the run")
    parser.add_argument(
        "--input",
        default=str(BUNDLED_CORPUS),
        help="raw documents JSONL (id, text, optional title/url/date); default: the bundled corpus",
    )
    parser.add_argument("--config", help="pipeline YAML (default: CPU template generation)")
    parser.add_argument("--trajectories", help="has: user-supplied ReAct trajectories JSONL")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--num-shards", type=int, help="default: the config's num_shards")
    args = parser.parse_args(argv)
    try:
        config = load_pipeline_config(args.config)
        num_shards = args.num_shards or config.num_shards
        st = Stage(config, Path(args.output), args.shard, num_shards, build_backend(config.backend))
        names = STAGES if args.stage == "pipeline" else [args.stage]
        for name in names:
            print(f"[data_synthesis] {name}", file=sys.stderr, flush=True)
            run_stage(name, st, args)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
