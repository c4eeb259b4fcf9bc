"""Rollouts: the agent loop over many questions (k samples each), judged, written to a resumable
JSONL file - the input of HAS and of the evaluation.

One line per (question, sample), appended as each batch finishes:

    {"key": "<id>#<sample>", "id", "sample", "question", "gold", "steps": [... real tool
     responses ...], "prediction", "turns", "tool_calls", "malformed", "invalid_calls",
     "failure", "judge": {"match", "llm", "correct", "judge_error"}, "correct", "policy"}

A rerun with the same output file skips the keys already there (a killed run resumes where it
stopped); progress and an ETA are printed after each batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from data_synthesis.agent.judge import judge_answers
from data_synthesis.agent.loop import AgentConfig, run_agent


def done_keys(path: Path) -> set[str]:
    """Keys already written (a torn last line from a kill is ignored and rewritten)."""
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            keys.add(json.loads(line)["key"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return keys


def _repair_tail(path: Path) -> None:
    """Drop a torn last line (no trailing newline) so appends start on a fresh line."""
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])


def rollout(
    questions: list[dict],
    policy,
    env,
    config: AgentConfig,
    judge=None,
    samples: int = 1,
    batch_size: int = 16,
    seed: int = 0,
    policy_name: str = "",
) -> list[dict]:
    """Roll out and judge `questions` ({"id", "question", "answer"}) in memory."""
    items = _items(questions, samples, set())
    gold = {q["id"]: q["answer"] for q in questions}
    out = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        out += _judged(batch, gold, policy, env, config, judge, seed + start, policy_name)
    return out


def _items(questions: list[dict], samples: int, skip: set[str]) -> list[dict]:
    """One work item per (question, sample) not in `skip`; key "<id>#<sample>"."""
    return [
        {
            "key": f"{q['id']}#{s}",
            "id": q["id"],
            "sample": s,
            "question": q["question"],
            "source_docs": q.get("source_docs") or [],
        }
        for q in questions
        for s in range(samples)
        if f"{q['id']}#{s}" not in skip
    ]


def _judged(batch, gold, policy, env, config, judge, seed, policy_name) -> list[dict]:
    records = run_agent(batch, policy, env, config)
    for record, item in zip(records, batch):
        record.update(id=item["id"], sample=item["sample"], gold=gold[item["id"]])
    verdicts = judge_answers(records, judge, seed=seed)
    for record, verdict in zip(records, verdicts):
        record.update(judge=verdict, correct=verdict["correct"], policy=policy_name)
    return records


def rollout_to_file(
    questions: list[dict],
    out_path: str | Path,
    policy,
    env,
    config: AgentConfig,
    judge=None,
    samples: int = 1,
    batch_size: int = 16,
    seed: int = 0,
    policy_name: str = "",
    log: Callable[[str], None] = print,
) -> Path:
    """`rollout` with resumable JSONL output and progress with an ETA."""
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(path)
    skip = done_keys(path)
    gold = {q["id"]: q["answer"] for q in questions}
    todo = _items(questions, samples, skip)
    total, started = len(todo), time.perf_counter()
    if skip:
        log(f"rollouts: {len(skip)} already in {path}, {total} to go")
    with path.open("a", encoding="utf-8") as handle:
        for start in range(0, total, batch_size):
            batch = todo[start : start + batch_size]
            for record in _judged(
                batch, gold, policy, env, config, judge, seed + start, policy_name
            ):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            done = start + len(batch)
            elapsed = time.perf_counter() - started
            eta = elapsed / done * (total - done)
            log(f"rollouts: {done}/{total} ({elapsed:.0f} s, ETA {eta:.0f} s)")
    return path


def read_rollouts(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows
