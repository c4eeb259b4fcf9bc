"""A run's fingerprint (data_synthesis/engine/fingerprint.py) when the tasks of a new run start
at once, as `--rank` launches do: every one of them records or checks the same run.json, none
fails on another's write; a task of another configuration is refused. And what fingerprinting
reads on the submitting machine (benchmarks/bench_submit.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from data_synthesis.engine.fingerprint import FingerprintMismatch, check_or_record


def _start_together(out, identities: list[dict]) -> list:
    barrier, results = threading.Barrier(len(identities)), [None] * len(identities)

    def task(i: int) -> None:
        barrier.wait()
        try:
            results[i] = check_or_record(out, identities[i])
        except Exception as error:  # noqa: BLE001 - the test reports it
            results[i] = error

    threads = [threading.Thread(target=task, args=(i,)) for i in range(len(identities))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("attempt", range(20))
def test_tasks_starting_a_run_at_once_all_record_the_same_fingerprint(tmp_path, attempt):
    identity = {"config": {"seed": attempt}, "inputs": [], "map_tasks": 8}
    results = _start_together(tmp_path / "run", [identity] * 16)
    assert len(set(results)) == 1 and isinstance(results[0], str), results
    assert json.loads((tmp_path / "run/run.json").read_text())["identity"] == identity
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["run.json"]  # no temporary left


def test_a_task_of_another_configuration_is_refused(tmp_path):
    check_or_record(tmp_path, {"config": {"seed": 0}})
    with pytest.raises(FingerprintMismatch, match=r"config.seed: 0 -> 1"):
        check_or_record(tmp_path, {"config": {"seed": 1}})


def test_naming_a_run_and_its_index_reads_the_edges_of_each_input_file(tmp_path):
    """benchmarks/bench_submit.py on 12 MB in 3 files of 4 MB: the run's fingerprint and the
    index's name each read at most the first and last 64 KiB of every file, whatever its size
    (naming the index read every byte until 2026-12-04: 1 TB on the submitting machine), and
    naming it again (each task opening the index) reads next to nothing."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_submit.py"
    command = [sys.executable, str(script), "--sizes-mb", "12", "--files", "3"]
    done = subprocess.run(
        [*command, "--work", str(tmp_path)], capture_output=True, text=True, check=True
    )
    (result,) = json.loads(done.stdout[: done.stdout.rindex("]") + 1])
    edges = 3 * 2 * 2**16 / 10**6
    assert 0 < result["run_fingerprint"]["read_mb"] <= edges + 0.1
    assert 0 < result["index_name"]["read_mb"] <= edges + 0.1
    assert result["index_name_again"]["read_mb"] < 0.1
    assert "| 12 MB in 3 files | " in done.stdout


@pytest.mark.skipif(not shutil.which("strace"), reason="bench_task_start.py counts calls by strace")
def test_a_task_touches_only_its_own_input_files(tmp_path):
    """benchmarks/bench_task_start.py on 300 one-document files and 16 map tasks: a map task
    stats and opens about its share of the files (19), not all 300 (as each did until
    2026-12-05), and a planning task opens its index without a call per corpus file (it named
    the index again: 21 stats per file); planning the run, once, describes every file with
    one open (format, text, edges: three opens and a memo's until 2026-12-05, the eleventh
    session) and names the index from those figures."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_task_start.py"
    command = [sys.executable, str(script), "--files", "300", "--tasks", "16"]
    done = subprocess.run(
        [*command, "--work", str(tmp_path)], capture_output=True, text=True, check=True
    )
    (result,) = json.loads(done.stdout[: done.stdout.rindex("]") + 1])
    calls = result["calls"]
    assert calls["map task"]["stat"] < 100 and calls["map task"]["open"] < 60, calls
    assert calls["open index"]["stat"] < 20 and calls["open index"].get("open", 0) < 10, calls
    assert 300 <= calls["plan"]["open"] < 300 * 1.2 and 300 <= calls["plan"]["stat"] < 300 * 3, (
        calls
    )
    assert "| 300 | map task | " in done.stdout


@pytest.mark.parametrize("key", ["memory_format", "outputs_format"])
def test_a_run_written_with_another_file_layout_is_refused(tmp_path, key):
    """The memory's shuffle files changed layout on 2026-12-05 (memory/values/ and
    memory/relations/ became memory/index_rows/), the questions and documents on 2026-12-06
    (pP.jsonl became pP.jsonl.zst): a run directory started by older code, whose fingerprint
    lacks the key, is refused with the difference named - resumed, its value_index stage
    would have found no rows to read, its dedup stage no documents."""
    from data_synthesis.config import PipelineConfig
    from data_synthesis.engine import memory_store, tasks
    from data_synthesis.engine.fingerprint import fingerprint
    from data_synthesis.engine.runner import make_plan

    layout = {"memory_format": memory_store.FORMAT, "outputs_format": tasks.OUTPUTS_FORMAT}[key]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "Vienna is a city."}) + "\n")
    make_plan(PipelineConfig(), tmp_path / "out", [str(corpus)])
    manifest = tmp_path / "out" / "run.json"
    recorded = json.loads(manifest.read_text())
    assert recorded["identity"][key] == layout
    del recorded["identity"][key]  # as older code recorded it
    recorded["fingerprint"] = fingerprint(recorded["identity"])
    manifest.write_text(json.dumps(recorded))
    with pytest.raises(FingerprintMismatch, match=rf"{key}: None -> {re.escape(repr(layout))}"):
        make_plan(PipelineConfig(), tmp_path / "out", [str(corpus)])


def test_a_run_made_under_other_search_defaults_is_refused(tmp_path):
    """The run's fingerprint holds its environment with the defaults filled in: a run started
    when one machine searched 4 shards of 8 GiB per question (before 2026-12-05) is refused when
    resumed under today's 2 of 16 MiB, instead of searching one way in its finished tasks and
    another in its new ones (its config, silent on both, did not change)."""
    from data_synthesis.config import PipelineConfig
    from data_synthesis.engine.fingerprint import fingerprint
    from data_synthesis.engine.runner import make_plan

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "Vienna is a city."}) + "\n")
    make_plan(PipelineConfig(), tmp_path / "out", [str(corpus)])
    manifest = tmp_path / "out" / "run.json"
    recorded = json.loads(manifest.read_text())
    assert "cache_dir" not in recorded["identity"]["environment"]  # where, not what
    recorded["identity"]["environment"].update(index_shard_mb=8192, search_shards=4)
    recorded["fingerprint"] = fingerprint(recorded["identity"])  # as the old defaults recorded it
    manifest.write_text(json.dumps(recorded))
    with pytest.raises(FingerprintMismatch, match=r"environment.search_shards: 4 -> 2"):
        make_plan(PipelineConfig(), tmp_path / "out", [str(corpus)])
