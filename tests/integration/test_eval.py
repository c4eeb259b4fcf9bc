"""The agentic evaluation (`python -m data_synthesis.eval`). Unit (seconds): question files in
our, BrowseComp and GAIA layouts with file:line errors, Pass@1/Pass@k arithmetic, the held-out
split, a model that is down. Integration (minutes; skipped without .venv-vllm): the whole command
against vLLM's CPU OpenAI server on a tiny checkpoint exported by our converter, and against the
real SmolLM2-135M-Instruct when its HF folder is available."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from data_synthesis.eval.__main__ import main
from data_synthesis.eval.heldout import heldout_doc, split_questions
from data_synthesis.eval.questions import QuestionFileError, load_questions
from data_synthesis.eval.report import score
from megatron_agentic.local_ranks import free_port
from megatron_agentic.testing.vllm import needs_vllm, vllm_serve

REPO = Path(__file__).resolve().parents[2]


def write_question_sets(directory: Path) -> list[Path]:
    """Three files, one per layout, over facts of the bundled corpus."""
    sets = {
        "heldout_questions.jsonl": [
            {"id": "h1", "question": "What is the capital of Austria?", "answer": "Vienna"},
            {"id": "h2", "question": "How long is the Danube?", "answer": "2,850 km"},
        ],
        "browsecomp.jsonl": [{"problem": "What is the capital of Peru?", "answer": "Lima"}],
        "gaia.jsonl": [
            {
                "task_id": "g1",
                "Question": "What is the currency of Hungary?",
                "Final answer": "forint",
            }
        ],
    }
    paths = []
    for name, rows in sets.items():
        path = directory / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(path)
    return paths


def test_question_layouts_and_errors_name_file_and_line(tmp_path):
    ours, browsecomp, gaia = write_question_sets(tmp_path)
    assert [q["layout"] for q in load_questions(ours)] == ["synthesized"] * 2
    assert load_questions(browsecomp)[0] == {
        "id": "browsecomp:1",
        "question": "What is the capital of Peru?",
        "answer": "Lima",
        "layout": "browsecomp",
        "source_docs": [],
    }
    assert load_questions(gaia)[0]["id"] == "g1" and load_questions(gaia)[0]["answer"] == "forint"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"Question": "a", "Final answer": "b"}\n\n{"Question": "c"}\n')
    with pytest.raises(QuestionFileError, match=r"bad.jsonl:3: missing field 'Final answer'"):
        load_questions(bad)
    bad.write_text('{"text": "no question"}\n')
    with pytest.raises(QuestionFileError, match=r"bad.jsonl:1: no question field"):
        load_questions(bad)
    bad.write_text('{"problem": "a", "answer": "b"}\n{"problem": "a"\n')
    with pytest.raises(QuestionFileError, match=r"bad.jsonl:2: invalid JSON"):
        load_questions(bad)


def test_a_folder_of_partition_files_is_one_question_set(tmp_path, capsys):
    """A large run's held-out questions stay one file per partition (eval/heldout_questions/):
    the folder is one set named after it, read in file-name order (not one set per file, as
    when the shell expanded p*.jsonl into many sets), --limit counts across its files, and an
    id in two of its files is refused naming the second."""
    folder = tmp_path / "heldout_questions"
    folder.mkdir()
    for p, answer in enumerate(["Vienna", "Lima", "forint"]):
        row = {"id": f"q{p}", "question": f"Question {p}?", "answer": answer}
        (folder / f"p{p:05d}.jsonl").write_text(json.dumps(row) + "\n")
    (folder / "notes.txt").write_text("not a question file")
    assert [q["answer"] for q in load_questions(folder)] == ["Vienna", "Lima", "forint"]
    assert [q["id"] for q in load_questions(folder, limit=2)] == ["q0", "q1"]
    out = tmp_path / "down"
    args = ["run", "--model", "m", "--base-url", f"http://127.0.0.1:{free_port()}/v1"]
    args += ["--request-retries", "0", "--output", str(out), "--questions", f"{folder}/"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["sets"]) == ["heldout_questions"]
    assert summary["sets"]["heldout_questions"]["questions"] == 3
    (folder / "p00003.jsonl").write_text(json.dumps({"id": "q1", "question": "a", "answer": "b"}))
    with pytest.raises(QuestionFileError, match=r"p00003.jsonl:1: duplicate id 'q1'"):
        load_questions(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuestionFileError, match=r"no .jsonl or .json question file"):
        load_questions(tmp_path / "empty")


def test_the_command_refuses_a_bad_question_file_before_running(tmp_path, capsys):
    bad = tmp_path / "gaia.jsonl"
    bad.write_text('{"Question": "Capital of Spain?"}\n')
    code = main(
        ["run", "--model", "m", "--base-url", "http://127.0.0.1:9/v1"]
        + ["--questions", str(bad), "--output", str(tmp_path / "out")]
    )
    assert code == 2 and "gaia.jsonl:1: missing field 'Final answer'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "summary.json").exists()


def test_pass_at_1_and_pass_at_k():
    def record(qid, correct, failure=None):
        return {
            "id": qid,
            "correct": correct,
            "turns": 2,
            "tool_calls": 1,
            "failure": failure,
            "prediction": None if failure else "x",
            "judge": {},
        }

    records = [record("a", True), record("a", False), record("b", False), record("b", False)]
    records += [record("c", False, "loop"), record("c", True)]
    summary = score(records)
    assert summary["samples"] == 2 and summary["questions"] == 3
    assert summary["pass@1"] == pytest.approx((0.5 + 0 + 0.5) / 3, abs=1e-4)
    assert summary["pass@2"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["failures"] == {"wrong answer": 3, "loop": 1}


def test_heldout_split_is_by_source_document():
    questions = [{"id": str(i), "source_docs": [f"d{i}", f"d{i + 1}"]} for i in range(200)]
    train, held = split_questions(questions, share=0.2, seed=5)
    assert 0 < len(held) < len(questions) and len(train) + len(held) == len(questions)
    assert all(any(heldout_doc(d, 0.2, 5) for d in q["source_docs"]) for q in held)
    assert not any(heldout_doc(d, 0.2, 5) for q in train for d in q["source_docs"])
    assert split_questions(questions, 0.2, 5) == (train, held)  # deterministic


def test_a_model_that_is_down_is_counted_and_the_run_finishes(tmp_path, capsys):
    files = write_question_sets(tmp_path)
    url = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "down"
    args = [
        "run",
        "--model",
        "m",
        "--base-url",
        url,
        "--request-retries",
        "0",
        "--output",
        str(out),
    ]
    assert main([*args, "--questions", *map(str, files)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sets"]["gaia"]["failures"] == {"model unreachable": 1}
    assert summary["sets"]["heldout_questions"]["pass@1"] == 0.0
    assert "model unreachable: 2" in capsys.readouterr().out


# --- integration: vLLM's CPU OpenAI server ----------------------------------------------------


def check_run(out: Path, sets: list[str], samples: int) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["sets"]) == sorted(sets)
    for name, row in summary["sets"].items():
        items = [json.loads(x) for x in (out / f"items-{name}.jsonl").read_text().splitlines()]
        assert len(items) == row["questions"] * samples == row["rollouts"]
        # every rollout ends: answered (judged) or with a counted reason
        reasons = sum(row["failures"].values())
        assert reasons == sum(1 for i in items if i["failure"] or not i["correct"])
        for item in items:
            for step in item["steps"]:
                assert "response" in step or "answer" in step
    return summary


@needs_vllm
def test_eval_end_to_end_on_vllm_serving_our_export(vllm_export, vllm_server, tmp_path, capsys):
    files = write_question_sets(tmp_path)
    common = ["--model", str(vllm_export), "--base-url", vllm_server, "--max-tokens", "48"]
    common += ["--max-turns", "2", "--max-prompt-chars", "30000", "--questions", *map(str, files)]
    assert (
        main(["run", *common, "--samples", "2", "--label", "k2", "--output", str(tmp_path / "a")])
        == 0
    )
    out = capsys.readouterr().out
    assert "ETA" in out and "Pass@1" in out
    check_run(tmp_path / "a", ["heldout_questions", "browsecomp", "gaia"], 2)
    assert main(["run", *common, "--label", "k1", "--output", str(tmp_path / "b")]) == 0
    check_run(tmp_path / "b", ["heldout_questions", "browsecomp", "gaia"], 1)
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    table = capsys.readouterr().out
    assert "k2" in table and "k1" in table and "pass@1" in table
    # a rerun finds every item done and only rescores
    assert main(["run", *common, "--label", "k1", "--output", str(tmp_path / "b")]) == 0
    rerun = capsys.readouterr().out
    assert "rollouts: 2 already in" in rerun and ", 0 to go" in rerun


SMOLLM = os.environ.get("SMOLLM2_HF_DIR", str(REPO / ".cache" / "smollm2-135m-instruct-hf"))


@needs_vllm
@pytest.mark.skipif(not Path(SMOLLM, "config.json").exists(), reason="no SmolLM2 HF folder")
def test_eval_end_to_end_with_smollm2_on_vllm(tmp_path):
    model = ["--model", SMOLLM, "--dtype", "bfloat16", "--max-model-len", "8192"]
    with vllm_serve(tmp_path / "serve.log", *model) as url:
        files = write_question_sets(tmp_path)
        args = ["run", "--model", SMOLLM, "--base-url", url]
        args += ["--max-tokens", "96", "--max-turns", "3", "--output", str(tmp_path / "smol")]
        assert main([*args, "--questions", str(files[0]), str(files[2])]) == 0
        summary = check_run(tmp_path / "smol", ["heldout_questions", "gaia"], 1)
        assert summary["sets"]["heldout_questions"]["questions"] == 2
