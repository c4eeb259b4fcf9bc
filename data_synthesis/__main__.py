"""Command line: `python -m data_synthesis pipeline --input X --output Y [--config C]`.

    python -m data_synthesis pipeline --output runs/synth                 # CPU default, bundled corpus
    python -m data_synthesis pipeline --input raw/ --output runs/synth --config gpu.yaml --tasks 64
    python -m data_synthesis pipeline questions.per_entity=1 --output runs/synth  # overrides
    python -m data_synthesis pipeline ... --executor slurm                # submit SLURM job arrays
    python -m data_synthesis extract --input raw/ --output runs/synth --rank 3   # one task of one stage

Stages run on HF datatrove (data_synthesis/engine/); `pipeline` runs them all in order. A rerun
of the same command resumes: finished tasks are skipped, a killed task resumes from its last
checkpointed batch. A rerun over the same --output with another input or config refuses.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from data_synthesis.config import load_pipeline_config
from data_synthesis.engine.fingerprint import FingerprintMismatch
from data_synthesis.engine.io import InputError
from data_synthesis.engine.runner import make_plan, run_local
from data_synthesis.engine.slurm import submit_slurm
from data_synthesis.engine.summary import StageEmpty
from data_synthesis.stages import STAGES

BUNDLED_CORPUS = Path(__file__).resolve().parent / "data" / "corpus.jsonl"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_synthesis", description=__doc__.split("\n")[0]
    )
    parser.add_argument("stage", choices=[*STAGES, "pipeline"])
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="config overrides right after the stage, as in training (e.g. backend.type=vllm "
        "questions.per_entity=1)",
    )
    parser.add_argument("--output", required=True, help="output directory of the run")
    parser.add_argument(
        "--input",
        nargs="+",
        default=[str(BUNDLED_CORPUS)],
        help="raw documents: JSONL files (plain, .gz, .zst, .bz2, .xz), parquet files (a text "
        "column) or directories of them "
        "(one object per line with text and optional id/title/url/date; a document without "
        "an id is named by its url, else <file>:<byte offset>); default: the bundled corpus",
    )
    parser.add_argument("--config", help="pipeline YAML (default: the CPU heuristic baseline)")
    parser.add_argument("--trajectories", help="has: user-supplied ReAct trajectories JSONL")
    parser.add_argument("--tasks", type=int, help="map tasks over the input (engine.tasks)")
    parser.add_argument("--partitions", type=int, help="memory partitions (engine.partitions)")
    parser.add_argument(
        "--partition-tasks",
        type=int,
        help="tasks of the partition stages, each covering several partitions with one LLM "
        "engine (engine.partition_tasks; default: one per partition)",
    )
    parser.add_argument("--workers", type=int, help="local tasks at once (engine.workers)")
    parser.add_argument("--executor", choices=["local", "slurm"], help="engine.executor")
    parser.add_argument("--rank", type=int, help="run only this task of the stage (local)")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also print datatrove's own lines (each task's pipeline and stats) on the console; "
        "they are in OUT/logs/<job>/logs/ either way",
    )
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        misplaced = [item for item in args.input if "=" in item and not Path(item).exists()]
        if misplaced:
            raise ValueError(f"{misplaced[0]}: put key=value overrides right after the stage")
        config = load_pipeline_config(args.config, args.overrides)
        engine = dataclasses.replace(
            config.engine,
            **{
                k: v
                for k, v in {
                    "tasks": args.tasks,
                    "partitions": args.partitions,
                    "partition_tasks": args.partition_tasks,
                    "workers": args.workers,
                    "executor": args.executor,
                }.items()
                if v is not None
            },
        )
        config = dataclasses.replace(config, engine=engine)
        plan = make_plan(config, args.output, args.input, args.trajectories, args.config)
        stages = STAGES if args.stage == "pipeline" else (args.stage,)
        if config.engine.executor == "slurm":
            jobs = submit_slurm(plan, stages)
            listed = "".join(f"\n  {job}" for job in jobs)
            print(f"submitted {len(jobs)} SLURM job arrays:{listed}", file=sys.stderr)
        else:
            run_local(plan, stages, rank=args.rank, verbose=args.verbose)
    except StageEmpty as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, ImportError, InputError, FingerprintMismatch) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
