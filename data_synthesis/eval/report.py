"""Scores of an evaluation run, its summary table, and two runs side by side.

Per question set (from the per-item rollout records, k samples per question):
- Pass@1: the mean over questions of (correct samples / k) - the unbiased Pass@1 with k samples;
- Pass@k: the share of questions with at least one correct sample (k samples drawn);
- average turns and tool calls per rollout; failure reasons (the agent loop's, plus
  "wrong answer" for a rollout that answered incorrectly); how often the LLM judge accepted
  what normalised matching did not.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path


def score(records: list[dict]) -> dict:
    by_question: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_question[record["id"]].append(record)
    n = len(by_question)
    samples = max((len(v) for v in by_question.values()), default=0)
    failures: Counter = Counter()
    for record in records:
        if record.get("failure"):
            failures[record["failure"]] += 1
        elif not record.get("correct"):
            failures["wrong answer"] += 1
    judge = [r.get("judge") or {} for r in records]

    def mean(values):
        values = list(values)
        return round(sum(values) / len(values), 4) if values else None

    return {
        "questions": n,
        "samples": samples,
        "rollouts": len(records),
        "pass@1": mean(sum(r["correct"] for r in v) / len(v) for v in by_question.values()),
        f"pass@{samples}": mean(any(r["correct"] for r in v) for v in by_question.values()),
        "avg_turns": mean(r["turns"] for r in records),
        "avg_tool_calls": mean(r["tool_calls"] for r in records),
        "answered": sum(1 for r in records if r.get("prediction") is not None),
        "failures": dict(failures.most_common()),
        "llm_judge_only": sum(1 for j in judge if j.get("llm") and not j.get("match")),
        "judge_errors": sum(1 for j in judge if j.get("judge_error")),
    }


def table(summary: dict) -> str:
    """A fixed-width table: one row per question set."""
    rows = [("set", "questions", "k", "Pass@1", "Pass@k", "turns", "tool calls", "failures")]
    for name, s in summary["sets"].items():
        k = s["samples"]
        failures = ", ".join(f"{r}: {c}" for r, c in s["failures"].items()) or "-"
        rows.append(
            (
                name,
                s["questions"],
                k,
                _pct(s["pass@1"]),
                _pct(s.get(f"pass@{k}")),
                s["avg_turns"],
                s["avg_tool_calls"],
                failures,
            )
        )
    return _render(rows)


def compare(a: Path, b: Path) -> str:
    """Two evaluation runs (directories with summary.json) side by side, per set."""
    left, right = (json.loads((Path(p) / "summary.json").read_text()) for p in (a, b))
    la, lb = left.get("label") or str(a), right.get("label") or str(b)
    rows = [("set", "metric", la, lb, "delta")]
    for name in sorted(set(left["sets"]) | set(right["sets"])):
        sa, sb = left["sets"].get(name, {}), right["sets"].get(name, {})
        keys = ["questions", "pass@1", f"pass@{sa.get('samples', 1)}", "avg_turns"]
        keys += ["avg_tool_calls"]
        for key in dict.fromkeys(keys):
            va, vb = sa.get(key), sb.get(key)
            delta = (
                round(vb - va, 4)
                if isinstance(va, (int, float)) and isinstance(vb, (int, float))
                else ""
            )
            pct = key.startswith("pass@")
            rows.append((name, key, _pct(va) if pct else va, _pct(vb) if pct else vb, delta))
    return _render(rows)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _render(rows) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows)
