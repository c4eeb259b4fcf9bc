"""Integration tests of the synthesis engine (data_synthesis/engine on HF datatrove), end to end
on the bundled corpus with the CPU heuristic baseline: every stage and the run summary; output
independent of the number of tasks (1 vs 3 map tasks, a partition task per partition vs one
over several) and of the executor (SLURM job arrays through fake
sbatch/srun, the search index built by its own sharded arrays, vs local); kill -9 at several moments then rerun = uninterrupted run; a rerun with
another input refuses; bad input named by file:line (non-UTF-8, a JSON array line), empty input
exits non-zero, a long document is split, compressed inputs give the plain input's output. Unit parts: the request checkpoint replays finished
LLM requests, byte ranges give every line to exactly one task, the memory view resolves links."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from data_synthesis.__main__ import BUNDLED_CORPUS, main
from data_synthesis.engine.checkpoint import RequestCache
from data_synthesis.engine.io import (
    count_lines,
    describe,
    input_files,
    iter_jsonl,
    open_lines,
    read_lines,
    task_ranges,
)
from data_synthesis.engine.memory_store import Layout, PartitionedMemory
from megatron_agentic.data.jsonl import expand_inputs
from megatron_agentic.data.jsonl import read_lines as read_jsonl_lines

REPO = Path(__file__).resolve().parents[2]
FINAL = ("final/fas.jsonl", "final/has.jsonl", "final/stats.json")


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def _cli(*args, check=True, env=None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "data_synthesis", *map(str, args)],
        cwd=REPO,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def _text(path: Path) -> str:
    """A `.jsonl.zst` stage output's text."""
    with open_lines(path) as handle:
        return handle.read().decode("utf-8")


def _same_outputs(a: Path, b: Path) -> None:
    for name in FINAL:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The first 80 documents of the bundled corpus (keeps each run to seconds)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(list(open(BUNDLED_CORPUS, encoding="utf-8"))[:80]))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("synth") / "run"
    assert (
        main(["pipeline", "--input", str(corpus), "--output", str(out), "--partitions", "2"]) == 0
    )
    return out


def test_no_heldout_page_reaches_a_has_text(run, corpus, tmp_path, monkeypatch):
    """HAS rollouts hide the held-out documents (a rule per id, eval/heldout.py): none of their
    urls is in a HAS text. The same has stage with the rule switched off shows some, so the
    check can fail."""
    import shutil

    from data_synthesis.eval.heldout import HeldoutRule, heldout_doc

    docs = [json.loads(line) for line in open(corpus)]
    held = {d["url"] for d in docs if heldout_doc(d["id"], 0.1, 1234)}

    def shown(text: str) -> list[str]:
        return [url for url in held if f"({url})" in text]

    assert held and not shown((run / "final/has.jsonl").read_text())
    copy = tmp_path / "unhidden"
    shutil.copytree(run, copy)
    for folder in ("logs/has", "counters/has", "docs/has"):
        shutil.rmtree(copy / folder)
    monkeypatch.setattr(HeldoutRule, "__contains__", lambda self, doc_id: False)
    assert main(["has", "--input", str(corpus), "--output", str(copy), "--partitions", "2"]) == 0
    assert shown("".join(_text(p) for p in (copy / "docs/has").glob("*.jsonl.zst")))


def test_every_stage_yields_and_the_summary_counts_them(run):
    stats = json.loads((run / "final/stats.json").read_text())
    assert stats["documents"] == 80
    assert stats["statements"] > stats["entities"] > 0
    assert stats["entities_with_2plus_sources"] > 0
    assert sum(stats["questions"].values()) > 0
    assert set(stats["documents_by_kind"]) == {"fas_planning", "fas_reasoning", "has"}
    assert all(n > 0 for n in stats["output_tokens_by_kind"].values())
    assert "dedup" in stats["rejects"]
    fas = [json.loads(line) for line in open(run / "final/fas.jsonl")]
    has = [json.loads(line) for line in open(run / "final/has.jsonl")]
    assert len(fas) + len(has) == sum(stats["documents_by_kind"].values())
    assert len({d["id"] for d in fas + has}) == len(fas) + len(has)
    # checkpoints are gone once tasks finish; every task left its counters
    assert not list((run / "checkpoints").rglob("*.partial"))
    assert len(list((run / "counters/memory").glob("t*.json"))) == 2
    # datatrove's own stats (its summary, logs/<job>/stats.json) name each stage and carry its
    # time and counters (before: "🧪 - SYNTHESIS: None", no time, no counts)
    for stage in ("extract", "memory", "questions", "planning", "has"):
        block = json.loads((run / "logs" / stage / "stats.json").read_text())[0]
        assert block["name"] == f"🧪 - SYNTHESIS: synthesis {stage}"
        assert block["time_stats"]["total"] > 0 and block["stats"]
    counted = json.loads((run / "logs/questions/stats.json").read_text())[0]["stats"]
    heldout = counted["questions: heldout"]["total"]  # the evaluation's, out of training
    assert heldout == stats["heldout_questions"] > 0
    assert counted["questions: out"]["total"] - heldout == sum(stats["questions"].values())
    assert counted["rejected (questions): entity without a usable statement group"]["total"] > 0


def test_finalize_reads_counts_not_documents_and_large_runs_keep_their_shards(
    run, corpus, tmp_path
):
    """The training documents are written by the dedup filter tasks (final/fas/, final/has/,
    in parallel); finalize builds the summary from counters and joins the shards into one file
    per kind only for a small run: the same summary with every question, entity and document
    file gone, and with `engine.final_single_file_mb: 0` no single files, the same documents."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for folder in ("logs/finalize", "questions", "memory/entities", "docs"):
        shutil.rmtree(copy / folder)
    for name in FINAL:
        (copy / name).unlink()
    assert (
        main(["finalize", "--input", str(corpus), "--output", str(copy), "--partitions", "2"]) == 0
    )
    _same_outputs(run, copy)
    stats = json.loads((run / "final/stats.json").read_text())
    assert stats["outputs"] == {
        "fas": "final/fas.jsonl",
        "has": "final/has.jsonl",
        "heldout_questions": "eval/heldout_questions.jsonl",
    }
    assert count_lines(run / "eval/heldout_questions.jsonl") == stats["heldout_questions"] > 0
    assert sum(stats["documents_by_kind"].values()) == sum(
        count_lines(path) for path in sorted((run / "final").glob("[fh]as/*.jsonl.zst"))
    )

    shards = tmp_path / "shards"
    args = ["pipeline", "engine.final_single_file_mb=0", "--input", str(corpus)]
    assert main([*args, "--output", str(shards), "--partitions", "2"]) == 0
    assert not (shards / "final/fas.jsonl").exists() and not (shards / "final/has.jsonl").exists()
    summary = json.loads((shards / "final/stats.json").read_text())
    assert summary.pop("outputs") == {
        "fas": "final/fas/*.jsonl.zst",
        "has": "final/has/*.jsonl.zst",
        "heldout_questions": "eval/heldout_questions/",
    }
    assert not (shards / "eval/heldout_questions.jsonl").exists()
    held = b"".join(p.read_bytes() for p in sorted(shards.glob("eval/heldout_questions/p*.jsonl")))
    assert held == (run / "eval/heldout_questions.jsonl").read_bytes()
    assert summary == {k: v for k, v in stats.items() if k != "outputs"}
    for kind in ("fas", "has"):
        joined = "".join(_text(p) for p in sorted((shards / "final" / kind).glob("*.jsonl.zst")))
        assert joined == (run / "final" / f"{kind}.jsonl").read_text()
        # what `tools/preprocess_data.py --input final/<kind>/` reads: the same lines
        lines = read_jsonl_lines(expand_inputs(str(shards / "final" / kind)))
        assert b"".join(line.raw for line in lines).decode() == joined


def test_a_finished_run_reruns_after_its_intermediate_folders_are_deleted(run, corpus, tmp_path):
    """docs/data_synthesis.md ("Disk at 1 TB"): once a run is finished, the folders no later
    stage reads may be deleted, and a rerun of the pipeline skips every stage and keeps the
    same outputs."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for folder in ("memory/statements", "memory/index_rows", "docs", "dedup"):
        shutil.rmtree(copy / folder)
    args = ["pipeline", "--input", str(corpus), "--output", str(copy), "--partitions", "2"]
    assert main(args) == 0
    _same_outputs(run, copy)
    assert not (copy / "docs").exists() and not (copy / "dedup").exists()


def test_memory_is_partitioned_and_links_resolve_without_a_scan(run):
    view = PartitionedMemory(run, Layout(2))
    files = sorted((run / "memory/entities").glob("p*.jsonl.zst"))
    assert len(files) == 2 and all(f.stat().st_size for f in files)
    linked = None
    for record in iter_jsonl(files[0]):
        if any(view.get(k) for k in record["links"]):
            linked = record
            break
    assert linked is not None
    target = next(view.get(k) for k in linked["links"] if view.get(k))
    assert target["entity"] != linked["entity"]


def test_output_does_not_depend_on_the_number_of_tasks(run, corpus, tmp_path):
    done = _cli(
        "pipeline",
        "engine.index_partitions=1",  # one value_index task reads both reduce tasks' rows
        "--input",
        corpus,
        "--output",
        tmp_path / "t3",
        "--tasks",
        "3",
        "--workers",
        "2",
        "--partitions",
        "2",
        "--partition-tasks",
        "1",  # one task over both partitions of questions, planning, reasoning and has
    )
    _same_outputs(run, tmp_path / "t3")
    assert "[data_synthesis] extract: 3/3 tasks (100%), " in done.stderr  # a job's progress
    assert "[data_synthesis] value_index: 1 task(s)" in done.stderr
    # datatrove's banners and per-task stats go to the task logs, not the console
    assert "PIPELINE" not in done.stderr and "Stats:" not in done.stderr, done.stderr[-3000:]
    log = (tmp_path / "t3/logs/extract/logs/task_00002.log").read_text(encoding="utf-8")
    assert "PIPELINE" in log and "Stats: Task 2" in log


def test_verbose_prints_datatroves_own_lines(corpus, tmp_path):
    done = _cli("extract", "--input", corpus, "--output", tmp_path / "v", "--verbose")
    assert "PIPELINE" in done.stderr and "Stats: All 1 tasks" in done.stderr


def test_a_task_of_several_partitions_builds_its_llm_once_and_resumes_by_partition(
    corpus, tmp_path, monkeypatch
):
    """engine.partition_tasks: 2 tasks over 4 partitions. The questions stage builds its LLM
    backend and environment once per task (a vLLM engine loads its model once, not once per
    partition: 16,384 loads per stage in the 1 TB plan before); a task killed after its first
    partition redoes only the second; the output equals one task per partition's."""
    from data_synthesis.engine import tasks

    built, build = [], tasks.TaskTools.build
    monkeypatch.setattr(
        tasks.TaskTools,
        "build",
        classmethod(lambda cls, plan, stage: built.append(stage) or build(plan, stage)),
    )
    common = ["--input", str(corpus), "--partitions", "4"]
    out, per_partition = tmp_path / "two_tasks", tmp_path / "four_tasks"
    for stage in ("extract", "memory", "value_index", "questions"):
        assert main([stage, *common, "--output", str(out), "--partition-tasks", "2"]) == 0
        assert main([stage, *common, "--output", str(per_partition)]) == 0
    assert built.count("questions") == 2 + 4
    executor = json.loads((out / "logs/questions/executor.json").read_text())
    assert executor["world_size"] == 2
    files = [out / f"questions/p{p:05d}.jsonl.zst" for p in range(4)]
    assert [f.read_bytes() for f in files] == [
        (per_partition / f"questions/p{p:05d}.jsonl.zst").read_bytes() for p in range(4)
    ]
    # task 1 (partitions 1 and 3) killed after partition 1: no counters, output nor completion
    first, before = files[1].stat().st_mtime_ns, files[3].read_bytes()
    for path in (files[3], out / "counters/questions/t00003.json"):
        path.unlink()
    (out / "logs/questions/completions/00001").unlink()
    log = out / "requests/questions/t00003.jsonl"  # its LLM request log, kept for a resume
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text('{"key": "k", "reply": "r"}\n')
    assert main(["questions", *common, "--output", str(out), "--partition-tasks", "2"]) == 0
    assert built.count("questions") == 2 + 4 + 1
    assert files[1].stat().st_mtime_ns == first and files[3].read_bytes() == before
    assert not log.exists()  # dropped with the checkpoint once the partition is finished


def test_slurm_job_arrays_through_fake_sbatch_equal_the_local_run(run, corpus, tmp_path):
    """datatrove's SlurmPipelineExecutor writes sbatch scripts; the fake sbatch runs each array
    task in turn (SLURM_ARRAY_TASK_ID), the fake srun runs its command, the fake scontrol names
    this host. The partition stages run one task over both partitions (engine.partition_tasks)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        "#!/usr/bin/env bash\n"
        'while [[ "$1" == -* ]]; do [[ "$1" == -n ]] && shift; shift; done\nexec "$@"\n'
    )
    (bin_dir / "sbatch").write_text(
        "#!/usr/bin/env bash\n"
        'script="${@: -1}"; offset=0\n'
        'for a in "$@"; do [[ "$a" == --export=*RUN_OFFSET=* ]] && offset="${a##*=}"; done\n'
        "last=$(sed -n 's/^#SBATCH --array=0-\\([0-9]*\\).*/\\1/p' \"$script\")\n"
        # datatrove's stats-merging jobs are not part of the output: acknowledged, not run
        'grep -q "^merge_stats" "$script" && { echo Submitted batch job $RANDOM; exit 0; }\n'
        'for i in $(seq 0 "${last:-0}"); do\n'
        f'  echo "$i" >> {tmp_path}/array_tasks\n'
        '  SLURM_ARRAY_TASK_ID=$i RUN_OFFSET=$offset SLURM_NODELIST=localhost bash "$script" '
        f">> {tmp_path}/slurm.log 2>&1 || exit 1\n"
        "done\n"
        "echo Submitted batch job $RANDOM\n"
    )
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\necho localhost\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = _env()
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env["MEGATRON_AGENTIC_INDEX_CACHE"] = str(tmp_path / "index_cache")  # built by the arrays
    out = tmp_path / "slurm"
    done = _cli(
        "pipeline",
        "environment.index_shards=3",
        "environment.search_shards=0",  # every shard, as the local run's one-shard index
        "--input",
        corpus,
        "--output",
        out,
        "--executor",
        "slurm",
        "--tasks",
        "4",
        "--partitions",
        "2",
        "--partition-tasks",
        "1",
        env=env,
    )
    assert "submitted" in done.stderr
    assert "\n  extract: 4 task(s), 0 GPU(s) each" in done.stderr  # the CPU baseline: no GPU
    assert "\n  has: 1 task(s), 0 GPU(s) each" in done.stderr
    assert (tmp_path / "array_tasks").read_text().split().count("3") >= 1  # >= 4 array tasks
    assert len(list((out / "logs/extract/completions").iterdir())) == 4
    assert len(list((out / "logs/memory/completions").iterdir())) == 2  # a task per partition
    assert len(list((out / "logs/has/completions").iterdir())) == 1  # one over both
    # the search index was built before planning as 3 shard tasks, and searched the same
    assert len(list((out / "logs/index_read/completions").iterdir())) == 3
    (stats,) = (tmp_path / "index_cache").glob("*/stats.json")
    assert len(json.loads(stats.read_text())["shards"]) == 3
    _same_outputs(run, out)


def test_a_resubmission_waits_for_the_runs_queued_jobs(corpus, tmp_path):
    """A submission records its arrays' job ids (logs/slurm_jobs.json); another one while squeue
    still lists any of them refuses and names them (their unfinished tasks would run twice at
    once); once they are gone it submits the unfinished tasks again. Every array asks SLURM to
    cancel it when a job it depends on fails, instead of waiting in the queue for ever."""
    bin_dir, queue, out = tmp_path / "bin", tmp_path / "queue", tmp_path / "run"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(  # submits nothing: the tasks stay unfinished
        "#!/usr/bin/env bash\n"
        f'grep -q "^merge_stats" "${{@: -1}}" || cp "${{@: -1}}" {tmp_path}/array.sbatch\n'
        "echo Submitted batch job $((RANDOM + 1000))\n"
    )
    (bin_dir / "squeue").write_text(f"#!/usr/bin/env bash\ncat {queue}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = _env()
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    submit = ["extract", "--input", corpus, "--output", out, "--executor", "slurm", "--tasks", "2"]

    first = _cli(*submit, env=env)
    (job,) = json.loads((out / "logs/slurm_jobs.json").read_text())
    assert job["name"] == "extract" and f"extract: 2 task(s), 0 GPU(s) each, job {job['id']}" in (
        first.stderr
    )
    assert "#SBATCH --kill-on-invalid-dep=yes" in (tmp_path / "array.sbatch").read_text()

    queue.write_text(f"77\n{job['id']}\n")  # still pending, among the user's other jobs
    refused = _cli(*submit, env=env, check=False)
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert f"jobs extract ({job['id']}) are still queued or running" in refused.stderr
    assert f"scancel {job['id']}" in refused.stderr

    queue.write_text("77\n")  # gone: its tasks failed or were cancelled
    again = _cli(*submit, env=env)
    (job_again,) = json.loads((out / "logs/slurm_jobs.json").read_text())
    assert f"job {job_again['id']}" in again.stderr


def test_slurm_arrays_ask_gpus_only_for_stages_that_call_the_llm(corpus, tmp_path):
    """With an LLM backend, extract and the question-side stages get the node's GPUs; the
    memory reduce, the value index, the index build, dedup and finalize get none."""
    from data_synthesis.config import load_pipeline_config
    from data_synthesis.engine.runner import jobs_for, make_plan
    from data_synthesis.engine.slurm import job_array
    from data_synthesis.stages import STAGES

    config = load_pipeline_config(
        None,
        ["backend.type=vllm", "engine.slurm.gpus_per_task=8", "engine.partitions=4"]
        + [f"environment.cache_dir={tmp_path / 'index'}"],  # not built yet: its jobs come too
    )
    plan = make_plan(config, tmp_path / "out", [str(corpus)])
    gpus, indexes = {}, set()
    for stage in STAGES:
        for name, pipeline, n in jobs_for(plan, stage, indexes):
            gpus[name] = job_array(plan, name, pipeline, n, None, stage).gpus_per_task
    llm = {"extract", "questions", "planning", "reasoning", "has"}
    assert {name for name, count in gpus.items() if count == 8} == llm
    assert {"memory", "value_index", "index_read", "finalize"} <= {
        n for n, c in gpus.items() if c == 0
    }
    assert any(name.startswith("dedup") for name in gpus) and len(gpus) > len(llm) + 4


def test_many_model_loads_per_stage_are_announced(corpus, tmp_path, capsys):
    """An in-process LLM engine loads its model once per task: 300 partition tasks would load
    it 300 times per stage, and the run says so naming the setting; 64 do not warn, nor does
    a served model (the openai backend loads nothing)."""
    from data_synthesis.config import load_pipeline_config
    from data_synthesis.engine.runner import make_plan

    def warned(*overrides) -> str:
        config = load_pipeline_config(None, ["engine.tasks=2", *overrides])
        make_plan(config, tmp_path / f"out{len(list(tmp_path.iterdir()))}", [str(corpus)])
        return capsys.readouterr().err

    many = warned("backend.type=vllm", "engine.partitions=300")
    assert "engine.partition_tasks is 300: each task loads the vllm model once" in many
    assert "engine.tasks" not in many.replace("engine.tasks 1024", "")
    assert not warned("backend.type=vllm", "engine.partitions=300", "engine.partition_tasks=64")
    assert not warned("backend.type=openai", "engine.partitions=300")


def test_the_value_index_runs_at_most_1024_tasks_unless_told(corpus, tmp_path):
    """Each value_index task reads a range of every reduce task's file: with as many tasks as
    the 1 TB plan's 16,384 partitions that is 268M reads, so its partitions stop at 1,024 by
    default (engine.index_partitions sets them; the output does not depend on them, see
    test_output_does_not_depend_on_the_number_of_tasks); 0 is an error naming the key."""
    from data_synthesis.config import load_pipeline_config
    from data_synthesis.engine.runner import jobs_for, make_plan

    def value_index_tasks(*overrides) -> int:
        config = load_pipeline_config(None, ["engine.tasks=1", *overrides])
        plan = make_plan(config, tmp_path / f"out{len(list(tmp_path.iterdir()))}", [str(corpus)])
        (_, _, count), *_ = jobs_for(plan, "value_index")
        assert count == plan.index_partitions
        return count

    assert value_index_tasks("engine.partitions=4") == 4
    assert value_index_tasks("engine.partitions=3000") == 1024
    assert value_index_tasks("engine.partitions=3000", "engine.index_partitions=2000") == 2000
    with pytest.raises(ValueError, match="engine.index_partitions: >= 1, got 0"):
        value_index_tasks("engine.partitions=4", "engine.index_partitions=0")


def _kill_when(process: subprocess.Popen, landed, timeout: float = 120.0) -> bool:
    """SIGKILL the process group as soon as `landed()` holds; False when the process ended
    first (the run had finished)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if landed():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    process.wait()
    return False


def test_kill_9_at_any_moment_then_rerun_is_identical(run, corpus, tmp_path):
    """Kills land in different stages and mid-task (batches of 4 items are checkpointed): each
    restart is killed once its stage has a task part-way (a checkpoint of finished batches) or
    has begun, whatever this machine's speed; the rerun resumes each and equals the
    uninterrupted run (the module's, batches of 64)."""
    config = tmp_path / "small_batches.yaml"
    config.write_text("engine:\n  batch_size: 4\n  partitions: 2\n")
    out = tmp_path / "killed"

    def part_way(stage: str):
        return lambda: any((out / "checkpoints" / stage).glob("*.partial"))

    def begun(job: str):
        return lambda: (out / "logs" / job).is_dir()

    moments = [part_way("extract"), begun("memory"), part_way("questions")]
    moments += [part_way("planning"), part_way("has"), begun("dedup-buckets")]
    landed = []
    for moment in moments:
        process = subprocess.Popen(
            [sys.executable, "-m", "data_synthesis", "pipeline", "--input", str(corpus)]
            + ["--output", str(out), "--config", str(config)],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        landed.append(_kill_when(process, moment))
    assert all(landed), landed  # every kill landed mid-run, none after the end
    assert not (out / "final/stats.json").exists()
    _cli("pipeline", "--input", corpus, "--output", out, "--config", config)
    _same_outputs(run, out)


def test_rerun_with_another_input_or_config_refuses(run, corpus, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text("".join(list(open(BUNDLED_CORPUS))[:50]))
    done = _cli("pipeline", "--output", run, "--input", other, "--partitions", "2", check=False)
    assert done.returncode == 1
    assert "another input or configuration" in done.stderr and "inputs" in done.stderr
    done = _cli("pipeline", "--output", run, "--input", corpus, "--partitions", "4", check=False)
    assert done.returncode == 1 and "partitions: 2 -> 4" in done.stderr


def test_bad_input_is_named_by_file_and_line(tmp_path):
    lines = list(open(BUNDLED_CORPUS, "rb"))[:5]
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(b"".join(lines[:3]) + b'{"id": "x", "text": "caf\xe9"}\n' + lines[3])
    done = _cli("pipeline", "--output", tmp_path / "a", "--input", latin, check=False)
    assert done.returncode == 1 and f"{latin}:4: not valid UTF-8" in done.stderr

    array = tmp_path / "array.jsonl"
    array.write_bytes(lines[0] + b'[{"id": "y", "text": "A list."}]\n')
    done = _cli("pipeline", "--output", tmp_path / "b", "--input", array, check=False)
    assert done.returncode == 1 and f"{array}:2: expected one JSON object" in done.stderr
    assert "got a JSON list" in done.stderr


def _parquet(path: Path, lines: list[bytes], row_group_size: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = [json.loads(line) for line in lines]
    columns = {
        key: [doc.get(key) for doc in docs] for key in ("id", "title", "url", "date", "text")
    }
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def test_compressed_and_parquet_inputs_give_the_plain_runs_output(run, corpus, tmp_path):
    """Web corpora ship compressed or as parquet: a folder of gzip, zstd (two frames, as pzstd
    writes), xz, bzip2 and parquet files, known by their first bytes (the gzip one is named
    .jsonl), read by 3 map tasks (a compressed file whole by one task, a parquet file by row
    groups) with the search tool's pages kept in the index, gives the plain single file's
    output byte for byte. A bad line inside a compressed file is named by file:line of the
    decompressed text, a parquet file without a text column or a damaged one by its name; a
    damaged compressed file is named, not read short; a compressed file larger than twice a
    task's share is named with a warning (the other tasks idle)."""
    import bz2
    import lzma

    lines = corpus.read_bytes().splitlines(keepends=True)
    parts = [lines[i * 14 : (i + 1) * 14] for i in range(5)] + [lines[70:]]  # in corpus order
    parts = [b"".join(part) for part in parts[:5]] + [parts[5]]
    folder = tmp_path / "in"
    folder.mkdir()
    zstd = zstandard.ZstdCompressor()
    half = len(parts[2]) // 2
    half = parts[2].index(b"\n", half) + 1
    (folder / "a.jsonl").write_bytes(parts[0])
    (folder / "b.jsonl").write_bytes(gzip.compress(parts[1]))
    (folder / "c.jsonl.zst").write_bytes(
        zstd.compress(parts[2][:half]) + zstd.compress(parts[2][half:])
    )
    (folder / "d.jsonl.xz").write_bytes(lzma.compress(parts[3]))
    (folder / "e.jsonl.bz2").write_bytes(bz2.compress(parts[4]))
    _parquet(folder / "f.parquet", parts[5], row_group_size=3)
    out = tmp_path / "out"
    _cli("pipeline", "--input", folder, "--output", out, "--tasks", 3, "--partitions", 2)
    _same_outputs(run, out)

    textless = tmp_path / "textless.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a"], "content": ["words"]}), textless)
    done = _cli("extract", "--output", tmp_path / "t", "--input", textless, check=False)
    assert done.returncode == 1, done.stderr
    assert f"{textless}: no 'text' column (columns: id, content)" in done.stderr
    latin = tmp_path / "latin.parquet"  # a binary text column, not UTF-8: named by file:row
    pq.write_table(pa.table({"id": ["a", "b"], "text": [b"A text.", b"caf\xe9"]}), latin)
    done = _cli("extract", "--output", tmp_path / "l", "--input", latin, check=False)
    assert done.returncode == 1 and f"{latin}:2: a binary column is not UTF-8" in done.stderr
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(textless.read_bytes()[:-40])
    done = _cli("extract", "--output", tmp_path / "p", "--input", broken, check=False)
    assert done.returncode == 1 and f"{broken}: not a readable parquet file" in done.stderr

    whole = tmp_path / "whole.jsonl.gz"  # one task reads it: the other three wait, and are told
    whole.write_bytes(gzip.compress(b"".join(lines[:20])))
    done = _cli("extract", "--output", tmp_path / "w", "--input", whole, "--tasks", 4)
    assert "larger than twice a map task's share" in done.stderr and str(whole) in done.stderr
    grouped = _parquet(tmp_path / "grouped.parquet", lines[:20], row_group_size=20)  # one group
    done = _cli("extract", "--output", tmp_path / "g", "--input", grouped, "--tasks", 4)
    assert "larger than twice a map task's share" in done.stderr and str(grouped) in done.stderr
    _parquet(grouped, lines[:20], row_group_size=2)  # ten groups: spread over the tasks
    done = _cli("extract", "--output", tmp_path / "g2", "--input", grouped, "--tasks", 4)
    assert "twice a map task's share" not in done.stderr

    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(lines[0] + lines[1] + b'{"id": "z", "text": }\n'))
    done = _cli("extract", "--output", tmp_path / "b", "--input", bad, check=False)
    assert done.returncode == 1 and f"{bad}:3: not valid JSON" in done.stderr, done.stderr
    for kind, compress in (("gzip", gzip.compress), ("zstd", zstd.compress)):
        cut = tmp_path / f"cut.jsonl.{kind}"  # zstandard's own reader ends a cut file quietly
        cut.write_bytes(compress(b"".join(lines[:20]))[:-300])
        done = _cli("extract", "--output", tmp_path / kind, "--input", cut, check=False)
        assert done.returncode == 1, done.stderr
        assert f"{cut}: a damaged {kind} file after" in done.stderr, done.stderr


def test_a_bad_line_in_a_searched_corpus_stops_the_run_and_leaves_no_index_build(tmp_path):
    """The index jobs before planning are the first to read the environment's corpora: a bad line
    there is named by file:line, and the failed build is removed (its fix is another corpus)."""
    scholar = tmp_path / "scholar.jsonl"
    scholar.write_text('{"id": "s1", "text": "A paper."}\n{"id": "s2", "text": ["a", "list"]}\n')
    env = dict(_env(), MEGATRON_AGENTIC_INDEX_CACHE=str(tmp_path / "cache"))
    done = _cli(
        "planning",
        f"environment.scholar_corpora=[{scholar}]",
        "--output",
        tmp_path / "out",
        env=env,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"error: {scholar}:2: a document needs a string 'text'" in done.stderr
    assert len(list((tmp_path / "cache").glob("*/stats.json"))) == 1  # the input's index
    assert not list((tmp_path / "cache").glob("*.build"))


def test_empty_input_exits_non_zero_naming_the_stage(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    done = _cli("pipeline", "--output", tmp_path / "out", "--input", empty, check=False)
    assert done.returncode == 2
    assert "stage extract" in done.stderr and "no documents" in done.stderr


def test_a_long_document_is_split_into_bounded_chunks(tmp_path):
    docs = [json.loads(line) for line in open(BUNDLED_CORPUS)][:200]
    long_doc = {"id": "long", "text": " ".join(d["text"] for d in docs) * 6}
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps(long_doc) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text("engine:\n  max_document_chars: 20000\n")
    started = time.monotonic()
    _cli("extract", "--output", tmp_path / "out", "--input", path, "--config", config)
    elapsed = time.monotonic() - started
    counters = json.loads((tmp_path / "out/counters/extract/t00000.json").read_text())
    assert counters["counts"]["input"]["split documents"] == 1
    chunks = len(long_doc["text"]) // 20000
    assert counters["counts"]["extract"]["in"] >= chunks
    assert elapsed < 300


def test_byte_ranges_give_every_line_to_exactly_one_task(tmp_path):
    """Plain files are cut anywhere, a parquet file between row groups, a compressed one goes
    whole to the task owning its first byte; either way each document is read once, in order,
    and progress counted line by line ends at the bytes on disk (it missed each range's last
    line, and so every one-document file, until 2026-12-05)."""
    lines = BUNDLED_CORPUS.read_bytes().splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_bytes(b"".join(lines[:100]))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[100:150])))
    (tmp_path / "c.jsonl").write_bytes(b"".join(lines[150:300]))
    _parquet(tmp_path / "d.parquet", lines[300:360], row_group_size=7)
    (tmp_path / "e.jsonl.zst").write_bytes(zstandard.compress(b"".join(lines[360:])))
    files = input_files([str(tmp_path)])
    names = ["a.jsonl", "b.jsonl.gz", "c.jsonl", "d.parquet", "e.jsonl.zst"]
    assert [f.name for f in files] == names
    described = describe(files)
    for world in (1, 2, 3, 7):
        split, read = [], 0
        for rank in range(world):
            for byte_range in task_ranges(described, rank, world):
                reader, had_lines = read_lines(byte_range), False
                for _, line in reader:  # progress as the tasks report it, a step per line
                    split.append(json.loads(line))
                    read, had_lines = read + reader.advanced(), True
                assert reader.consumed == byte_range.end - byte_range.start
                tail = reader.advanced()  # left only where no line starts
                assert not (tail and had_lines), (world, byte_range)
                read += tail
        assert split == [json.loads(line) for line in lines], world
        assert read == sum(f.stat().st_size for f in files), world


class _CountingBackend:
    """A stand-in model: answers each prompt with its length and counts calls."""

    def __init__(self):
        self.prompts = 0

    def generate(self, prompts, seed=0):
        self.prompts += len(prompts)
        return [f"{len(p)}:{seed}" for p in prompts]


def test_a_jobs_progress_counts_completion_marks_and_extrapolates_an_eta(tmp_path):
    """JobProgress (a stage's ETA over its tasks): a line when marks appear, one at the end; the
    rate counts only the tasks finished in this run, not those an earlier run had finished."""
    import io

    from data_synthesis.engine.progress import JobProgress

    folder = tmp_path / "completions"
    folder.mkdir()
    (folder / "00000").touch()  # finished by an earlier run
    out = io.StringIO()
    with JobProgress("planning", folder, 5, interval=0, out=out) as progress:
        assert progress.line(1, 10.0).endswith("1/5 tasks (20%), 0:00:10 elapsed, ETA unknown")
        assert progress.line(3, 20.0).endswith("3/5 tasks (60%), 0:00:20 elapsed, ETA 0:00:20")
        for name in ("00001", "00002"):
            (folder / name).touch()
        deadline = time.monotonic() + 10
        while "3/5 tasks" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.1)
        for name in ("00003", "00004"):
            (folder / name).touch()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[data_synthesis] planning: 3/5 tasks (60%), ") and "ETA" in lines[0]
    assert lines[-1].startswith("[data_synthesis] planning: 5/5 tasks (100%), ")
    assert "ETA" not in lines[-1]


def test_request_cache_replays_finished_requests_after_a_restart(tmp_path):
    first = _CountingBackend()
    cache = RequestCache(first, tmp_path / "requests.jsonl")
    assert cache.generate(["a", "bb"], seed=1) == ["1:1", "2:1"]
    with open(tmp_path / "requests.jsonl", "a") as handle:
        handle.write('{"key": "torn')  # a kill in the middle of a write
    second = _CountingBackend()
    resumed = RequestCache(second, tmp_path / "requests.jsonl")
    assert resumed.generate(["a", "bb", "ccc"], seed=1) == ["1:1", "2:1", "3:1"]
    assert second.prompts == 1 and resumed.replayed == 2
    assert resumed.generate(["a"], seed=2) == ["1:2"] and second.prompts == 2


def test_scaling_benchmark_measures_every_task_of_each_stage(tmp_path):
    """benchmarks/bench_synthesis.py (the figures in docs/benchmarks.md) on 1 MB, 2 tasks at once:
    one row per stage with CPU seconds and the largest task's RSS, documents/s/core overall,
    and the disk each folder of the run takes."""
    done = _bench_1mb(tmp_path, "--stages", "extract", "memory", "value_index", "questions")
    (result,) = json.loads((tmp_path / "results.json").read_text())
    assert result["stages_run"] == ["extract", "memory", "value_index", "questions"]
    assert result["documents"] > 1500 and result["summary"]["statements"] > 0
    for row in result["stages"].values():
        assert row["seconds"] > 0 and 30 < row["max_task_rss_mb"] < 1000
    assert "| 1 MB | extract..questions |" in done.stdout
    disk = result["disk"]
    assert disk["memory/statements"]["mb"] > 0 and disk["memory/statements"]["files"] >= 1
    assert disk["questions"]["files"] > 0 and "docs/has" not in disk
    assert "| memory/statements | " in done.stdout
    # a rerun keeps the measures of finished tasks (a day-long benchmark stopped and rerun)
    # and runs only the tasks without one
    measures = tmp_path / "run_1mb" / "bench_measures.jsonl"
    lines = measures.read_text().splitlines()
    assert [json.loads(line)["stage"] for line in lines] == list(result["stages"])
    measures.write_text("\n".join(lines[:-1]) + "\n")  # questions: as if killed before its end
    _bench_1mb(tmp_path, "--stages", "extract", "questions")
    (again,) = json.loads((tmp_path / "results.json").read_text())
    assert again["stages"]["extract"] == result["stages"]["extract"]
    rerun = [json.loads(line) for line in measures.read_text().splitlines()]
    assert [r["stage"] for r in rerun] == [*result["stages"]][:3] + ["questions"]
    assert rerun[-1]["cpu"] != json.loads(lines[-1])["cpu"]
    # --sample-tasks reruns finished tasks: their work again, not a skip of their partition
    counters = tmp_path / "run_1mb" / "counters" / "questions" / "t00000.json"
    counters.write_text("{}")  # what the rerun must rewrite
    _bench_1mb(tmp_path, "--stages", "questions", "--sample-tasks", "1")
    assert json.loads(counters.read_text())["counts"]["questions"]["in"] > 0


def _bench_1mb(work: Path, *flags: str) -> subprocess.CompletedProcess:
    """benchmarks/bench_synthesis.py on 1 MB in `work`, 2 tasks at once; it must succeed."""
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_synthesis.py", "--sizes-mb", "1", "--mb-per-task", "1"]
        + ["--jobs", "2", "--work", str(work), *flags],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_scaling_benchmark_codes_each_copy_with_a_term_the_index_keeps():
    """The benchmark's copies differ only by their code, so each code must be one term of the
    search index, and a different one: the codes "A".."Z" and the stop words among "AA"..
    made 26 of the 45 copies at 10 MB one copy to the search (docs/benchmarks.md), and the
    stemmer makes "QBY" and "QBI" one term."""
    from benchmarks.bench_synthesis import _code
    from data_synthesis.environment.build import Analyser

    analyser = Analyser(stem=True)
    terms = [analyser.terms(f"Paris {_code(k)}") for k in range(20_000)]
    assert all(len(t) == 2 for t in terms) and len({t[1] for t in terms}) == 20_000


def test_the_scaling_benchmark_reruns_a_killed_whole_stage_job_from_its_start(tmp_path):
    """dedup is one measured job of several datatrove steps (about 77 minutes at 1 GB): killed
    when a long benchmark is stopped, its rerun would resume and be measured only in part. Its
    steps' completion markers are removed before it is measured again; other stages' stay."""
    from benchmarks.bench_synthesis import _forget_job

    logs = tmp_path / "logs"
    for job in ("dedup-signatures", "dedup-filter", "dedupe", "extract", "finalize"):
        (logs / job / "completions").mkdir(parents=True)
        (logs / job / "completions" / "00000").touch()
    _forget_job(tmp_path, "dedup")
    left = sorted(p.parent.parent.name for p in logs.glob("*/completions/00000"))
    assert left == ["dedupe", "extract", "finalize"]
    _forget_job(tmp_path, "finalize")
    assert not (logs / "finalize" / "completions").exists()


def test_dedup_benchmark_on_copies_moves_each_copy_to_the_codes_of_a_larger_corpus(tmp_path):
    """benchmarks/bench_dedup_copies.py (dedup and finalize at 1 GB in docs/benchmarks.md) on
    1 MB x 3: copy j of a document is the source document with each copy code moved j source
    corpora on (the code `make_corpus` gives that copy of a corpus 3x as large) and its id
    made unique; partition p + j of the copies' run is copy j of partition p; dedup and
    finalize are measured on both runs and the copies' summary counts every copy."""
    from benchmarks.bench_dedup_copies import code_index
    from benchmarks.bench_synthesis import _code

    assert [code_index(_code(k)) for k in range(30_000)] == list(range(30_000))
    command = [sys.executable, "benchmarks/bench_dedup_copies.py", "--from-mb", "1"]
    command += ["--mb-per-task", "1", "--copies", "3", "--jobs", "2", "--work", str(tmp_path)]
    done = subprocess.run(
        command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "results_copies.json").read_text())
    assert result["partitions"] == [1, 3]
    assert result["documents_in"]["copies"] == 3 * result["documents_in"]["source"] > 0
    for row in [*result["source"].values(), *result["copied"].values()]:
        assert row["seconds"] > 0 and 30 < row["max_task_rss_mb"] < 2000
    assert result["near_duplicates"]["copies"] >= result["near_duplicates"]["source"]
    assert "| dedup | " in done.stdout
    source = tmp_path / "run_1mb" / "docs" / "has" / "p00000.jsonl.zst"
    copies = tmp_path / "run_1mb_x3" / "docs" / "has"
    assert sorted(p.name for p in copies.iterdir()) == [f"p0000{j}.jsonl.zst" for j in range(3)]
    first = next(iter_jsonl(source))
    second = next(iter_jsonl(copies / "p00002.jsonl.zst"))
    source_copies = -(-count_lines(tmp_path / "corpus_1mb.jsonl") // count_lines(BUNDLED_CORPUS))
    pairs = list(zip(re.split(r"(\W+)", first["text"]), re.split(r"(\W+)", second["text"])))
    assert len(pairs) == len(re.split(r"(\W+)", second["text"]))
    moved = [(a, b) for a, b in pairs if a != b]
    assert moved and all(a[0] in "Qq" and b[0] in "Qq" for a, b in moved)
    assert all(code_index(b) == code_index(a) + 2 * source_copies for a, b in moved)
    ids = [d["id"] for j in range(3) for d in iter_jsonl(copies / f"p0000{j}.jsonl.zst")]
    assert len(set(ids)) == len(ids) and second["id"].endswith("/copy2")


def test_compressed_input_benchmark_reads_each_codec_to_the_same_text(tmp_path):
    """benchmarks/bench_compressed_input.py on 1 MB in 2 files: every codec's files decompress
    to the plain text, and its extract and index rows are measured."""
    script = REPO / "benchmarks" / "bench_compressed_input.py"
    command = [sys.executable, str(script), "--mb", "1", "--files", "2", "--extract-mb", "1"]
    command += ["--codecs", "plain", "gzip", "zstd", "--work", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=600, env=_env())
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [row["codec"] for row in rows] == ["plain", "gzip", "zstd"]
    assert len({row["text_mb"] for row in rows}) == 1
    assert all(row["mb_on_disk"] < rows[0]["mb_on_disk"] for row in rows[1:])
    assert all(row["extract_cpu_s"] > 0 and row["index_mb"] > 0 for row in rows)


def test_automatic_counts_follow_the_text_of_compressed_inputs(tmp_path, monkeypatch):
    """Tasks and partitions default to one per 64 MiB of input: of text, so a compressed corpus
    (3-4x smaller on disk) gets the plain one's counts, not a third of them (a reduce task would
    hold 3-4x the entities). The text of a compressed file is estimated from its first 64 KiB,
    a parquet file's is its row groups' uncompressed size."""
    import bz2
    import lzma

    from data_synthesis.config import PipelineConfig
    from data_synthesis.engine import runner
    from data_synthesis.engine.io import text_size

    monkeypatch.setattr(runner, "AUTO_BYTES_PER_TASK", 16 << 10)
    data = BUNDLED_CORPUS.read_bytes()
    plain = runner.make_plan(PipelineConfig(), tmp_path / "plain", [str(BUNDLED_CORPUS)])
    for name, compress in (
        ("gz", gzip.compress),
        ("zst", zstandard.compress),
        ("xz", lzma.compress),
        ("bz2", bz2.compress),
        ("parquet", None),
    ):
        packed = tmp_path / f"corpus.jsonl.{name}"
        if compress is None:
            _parquet(packed, data.splitlines(keepends=True), row_group_size=50)
        else:
            packed.write_bytes(compress(data))
        assert packed.stat().st_size < len(data) / 1.5
        assert abs(text_size(packed) - len(data)) < 0.1 * len(data), name
        plan = runner.make_plan(PipelineConfig(), tmp_path / name, [str(packed)])
        assert abs(plan.map_tasks - plain.map_tasks) <= 1, name
        assert abs(plan.partitions - plain.partitions) <= 1, name


def test_documents_without_ids_are_named_by_url_or_place(corpus, tmp_path):
    """C4 carries a url and no id, the Pile neither: such a document is named by its url, else
    by "<file name>:<byte offset>", the same in the run and in the search index, so the
    questions' sources are pages the agent can visit."""
    from data_synthesis.environment.index import CorpusIndex, IndexConfig

    lines = corpus.read_text().splitlines()
    bare = tmp_path / "bare.jsonl"
    with bare.open("w") as handle:
        for number, line in enumerate(lines):
            doc = json.loads(line)
            del doc["id"]
            if number % 2:
                del doc["url"]
            handle.write(json.dumps(doc) + "\n")
    cache = tmp_path / "cache"
    env = dict(_env(), MEGATRON_AGENTIC_INDEX_CACHE=str(cache))
    _cli("pipeline", "--input", bare, "--output", tmp_path / "out", env=env)
    questions = [
        q for p in (tmp_path / "out" / "questions").glob("*.jsonl.zst") for q in iter_jsonl(p)
    ]
    sources = {doc for q in questions for doc in q["source_docs"]}
    assert any(s.startswith("https://") for s in sources)
    assert any(s.startswith("bare.jsonl:") for s in sources)
    index = CorpusIndex.open([bare.resolve()], IndexConfig(cache_dir=str(cache)))
    for source in sorted(sources)[:20]:
        page = index.page(source)
        assert page is not None and page["text"], source
    has = (tmp_path / "out" / "final" / "has.jsonl").read_text()
    assert "bare.jsonl:" in has  # a visit of a page named by its place


def _text_of(ranges) -> int:
    return sum(len(line) for byte_range in ranges for _, line in read_lines(byte_range))


def test_tasks_cut_the_inputs_by_the_plan_and_touch_only_their_files(tmp_path):
    """The submitting process describes every input once (size, format, text); a map task cuts
    the inputs by those figures and opens only the files its range meets, so the others may
    even be gone. The text, not the bytes on disk, is shared evenly: a plain file beside
    zstd files. A file that changed after the run was planned is an error naming it."""
    from data_synthesis.config import PipelineConfig
    from data_synthesis.engine import runner, tasks
    from data_synthesis.engine.io import InputError

    lines = BUNDLED_CORPUS.read_bytes().splitlines(keepends=True)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b"".join(lines[:120]))
    for number in range(8):
        part = b"".join(lines[120 + 30 * number : 150 + 30 * number])
        (folder / f"b{number}.jsonl.zst").write_bytes(zstandard.compress(part))
    plan = runner.make_plan(PipelineConfig(), tmp_path / "out", [str(folder)])
    assert [f.codec for f in plan.inputs] == [None] + ["zstd"] * 8
    texts = [_text_of(task_ranges(list(plan.inputs), rank, 3)) for rank in range(3)]
    assert max(texts) < 1.3 * sum(texts) / 3, texts
    by_disk = [dataclasses.replace(f, text=f.size) for f in plan.inputs]  # the cut before
    texts = [_text_of(task_ranges(by_disk, rank, 3)) for rank in range(3)]
    assert max(texts) > 1.5 * sum(texts) / 3, texts

    plan = tasks.RunPlan(**{**plan.__dict__, "map_tasks": 3})
    mine = {r.path for r in task_ranges(list(plan.inputs), 2, 3)}
    assert str(folder / "a.jsonl") not in mine
    for other in {f.path for f in plan.inputs} - mine:
        Path(other).unlink()
    tasks.run_extract(plan, 2, 3)  # the other tasks' files are gone: not touched
    counters = json.loads((tmp_path / "out/counters/extract/t00002.json").read_text())
    assert counters["counts"]["input"]["documents"] == sum(
        1 for r in task_ranges(list(plan.inputs), 2, 3) for _ in read_lines(r)
    )

    changed = sorted(mine)[0]
    with open(changed, "ab") as handle:
        handle.write(zstandard.compress(lines[0]))
    with pytest.raises(InputError, match=f"{changed}: .* when this run was planned"):
        tasks.run_extract(plan, 2, 3)
