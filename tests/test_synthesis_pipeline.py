"""data_synthesis on the bundled corpus: every stage's output, resume after kill -9, sharding,
filters, and the LLM parse-retry-drop path (scripted replies for the parser, a tiny random
Qwen3 through the transformers backend for the real path)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from data_synthesis.__main__ import BUNDLED_CORPUS, main
from data_synthesis.shards import read_jsonl

STAGE_OF = {"fas": {"planning", "reasoning"}, "has": {"has"}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "run"
    assert main(["pipeline", "--output", str(out)]) == 0
    return out


def test_pipeline_outputs_every_stage_and_style(run):
    memory = read_jsonl(run / "memory" / "memory.jsonl")
    assert len(memory) == len(read_jsonl(BUNDLED_CORPUS))
    vienna = next(r for r in memory if r["entity"] == "Vienna")
    assert {"Danube", "Austria"} <= set(vienna["neighbours"])
    assert all(s["source"] and s["url"] for s in vienna["statements"])
    stats = json.loads((run / "final" / "stats.json").read_text())
    assert set(stats["questions"]) == {
        "factual",
        "multi_hop",
        "numeric",
        "comparison",
        "obfuscated",
    }
    for name, stages in STAGE_OF.items():
        docs = read_jsonl(run / "final" / f"{name}.jsonl")
        assert docs and {d["stage"] for d in docs} == stages
        assert all(d["text"] and d["generator"].startswith("template") for d in docs)
    assert stats["rejected"]["planning"]["answers without acquiring the knowledge"] > 0


def test_questions_have_gold_answers_their_records_support(run):
    statements = {
        s["id"]: s["text"]
        for r in read_jsonl(run / "memory" / "memory.jsonl")
        for s in r["statements"]
    }
    questions = [q for q in read_jsonl(next((run / "questions").glob("*.jsonl")))]
    for question in questions:
        assert question["records"] and all(r in statements for r in question["records"])
        if question["style"] in ("factual", "multi_hop", "obfuscated"):
            assert question["answer"] in statements[question["records"][-1]]
        if question["style"] == "multi_hop":
            assert 2 <= question["hops"] <= 3
    reasoning = [d for d in read_jsonl(run / "final" / "fas.jsonl") if d["stage"] == "reasoning"]
    by_id = {q["id"]: q for q in questions}
    for document in reasoning:
        assert f"<answer>{by_id[document['question_id']]['answer']}</answer>" in document["text"]


def test_has_texts_choose_the_original_step(run):
    for document in read_jsonl(run / "final" / "has.jsonl")[:50]:
        text = document["text"]
        for position in document["chosen_positions"]:
            assert f"Decision: option {position} is taken." in text
        assert text.rstrip().endswith("Outcome: the final decision was correct.")
        assert text.count("<tool_response>") == len(document["chosen_positions"]) - 1


def test_kill_9_mid_shard_then_rerun_is_byte_identical(run, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "data_synthesis", "pipeline", "--output", str(out)]
    for _ in range(10):
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        while proc.poll() is None and not any(p.stat().st_size for p in out.glob("*/*.partial")):
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if list(out.glob("*/*.partial")):
            break
    assert list(out.glob("*/*.partial")), "never caught a shard mid-way"
    assert not (out / "final").exists()
    assert main(["pipeline", "--output", str(out)]) == 0
    for name in ("fas.jsonl", "has.jsonl", "stats.json"):
        assert (out / "final" / name).read_bytes() == (run / "final" / name).read_bytes()


def test_sharded_run_produces_the_same_documents(run, tmp_path):
    out = tmp_path / "sharded"
    for stage in ("memory", "questions", "planning", "reasoning", "has"):
        for shard in (1, 0):
            assert (
                main([stage, "--output", str(out), "--shard", str(shard), "--num-shards", "2"]) == 0
            )
    assert main(["finalize", "--output", str(out), "--num-shards", "2"]) == 0
    for name in ("fas", "has"):
        texts = Counter(d["text"] for d in read_jsonl(out / "final" / f"{name}.jsonl"))
        reference = Counter(d["text"] for d in read_jsonl(run / "final" / f"{name}.jsonl"))
        # near-duplicate removal keeps the first of a pair, and shard order changes which is first
        assert abs(sum(texts.values()) - sum(reference.values())) <= 0.02 * sum(reference.values())


def test_decontamination_removes_documents_that_share_ngrams(run, tmp_path):
    fas = read_jsonl(run / "final" / "fas.jsonl")
    leaked = next(d for d in fas if d["stage"] == "reasoning")
    question = leaked["text"].split("\n")[0].removeprefix("Question: ")
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"question": question + " " + question}) + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"filters:\n  eval_sets: [{evals}]\n  ngram: 8\n")
    out = tmp_path / "decontam"
    shutil.copytree(run, out)
    shutil.rmtree(out / "final")
    assert main(["finalize", "--output", str(out), "--config", str(config)]) == 0
    stats = json.loads((out / "final" / "stats.json").read_text())
    assert stats["removed"]["fas"]["contaminated"] >= 1
    assert all(question not in d["text"] for d in read_jsonl(out / "final" / "fas.jsonl"))


def test_bad_input_is_named_and_paths_ignore_content(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "ok."}\n{"id": "b", "text": \n')
    assert main(["memory", "--input", str(bad), "--output", str(tmp_path / "o")]) == 1
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err
    hostile = tmp_path / "hostile.jsonl"
    hostile.write_text(
        json.dumps(
            {
                "id": "../../escape",
                "title": "../../escape",
                "text": "The Rhine flows into the North Sea.",
            }
        )
        + "\n"
    )
    assert main(["pipeline", "--input", str(hostile), "--output", str(tmp_path / "safe")]) == 0
    written = {p.resolve() for p in tmp_path.rglob("*")}
    assert all(str(p).startswith(str(tmp_path.resolve())) for p in written)
    assert not (tmp_path.parent / "escape").exists()
