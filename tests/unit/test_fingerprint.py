"""A run's fingerprint (data_synthesis/engine/fingerprint.py) when the tasks of a new run start
at once, as `--rank` launches do: every one of them records or checks the same run.json, none
fails on another's write; a task of another configuration is refused."""

from __future__ import annotations

import json
import threading

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
