"""Unit tests (single process, seconds) of rollouts and HAS over the real offline environment
(bm25s over the bundled corpus), with a scripted model standing in for the LLM: real tool
responses in trajectories, both outcomes, failure reasons counted without stopping the run
(malformed replies, loops, context, a model that is down), resumable output, and HAS documents
whose every decision lists at least two options."""

from __future__ import annotations

import json
import re

import pytest

from data_synthesis import react
from data_synthesis.agent.heuristic import HeuristicPolicy
from data_synthesis.agent.loop import AgentConfig, LLMPolicy, run_agent
from data_synthesis.agent.rollouts import read_rollouts, rollout, rollout_to_file
from data_synthesis.config import BackendConfig, PipelineConfig
from data_synthesis.environment import Environment, EnvironmentConfig
from data_synthesis.has.synthesis import LLMHAS, HeuristicHAS, incorrect_share
from data_synthesis.llm.openai_backend import OpenAICompatibleBackend
from data_synthesis.stage_api import StageContext
from megatron_agentic.local_ranks import free_port

QUESTIONS = [
    {"id": "q-austria", "question": "What is the capital of Austria?", "answer": "Vienna"},
    {"id": "q-peru", "question": "What is the capital of Peru?", "answer": "Lima"},
    {"id": "q-wrong", "question": "What is the capital of Hungary?", "answer": "Budapest"},
]


class ScriptedModel:
    """A stand-in for an LLM: reads the conversation and answers by rules. It searches, then
    answers from the REAL search response (so it is right when the environment is), except for
    Hungary, where it answers wrongly; it writes HAS alternatives and judge verdicts."""

    name = "scripted"

    def __init__(self, garbage_alternatives: bool = False):
        self.garbage_alternatives = garbage_alternatives
        self.calls = 0

    def generate(self, prompts, seed, schema=None, stop=None):
        self.calls += 1
        return [self._reply(messages) for messages in prompts]

    def _reply(self, messages) -> str:
        text = "\n".join(m["content"] for m in messages)
        if "You judge answers" in text:
            return json.dumps({"equivalent": False, "reason": "different city"})
        if "possible next steps" in text.lower() and "### Option" in text:
            return self._alternatives(text)
        start = max(i for i, m in enumerate(messages) if m["content"].startswith("Question:"))
        question, messages = messages[start]["content"], messages[start:]
        if "malformed" in question:
            return "I think the answer is somewhere, let me see"
        if "loop" in question:
            return '<think>again</think><tool_call>{"name": "search", "arguments": {"query": ["loop"]}}</tool_call>'
        responses = [m["content"] for m in messages if m["content"].startswith("<tool_response>")]
        country = re.search(r"capital of (\w+)", question).group(1)
        if not responses:
            call = {"name": "search", "arguments": {"query": [f"capital of {country}"]}}
            return (
                f"<think>I search for {country}.</think>\n<tool_call>{json.dumps(call)}</tool_call>"
            )
        if country == "Hungary":
            return "<think>I guess.</think><answer>Szeged</answer>"
        found = re.search(rf"capital of {country} is (\w+)", responses[-1])
        answer = found.group(1) if found else "unknown"
        return f"<think>The result says so.</think>\n<answer>{answer}</answer><tool_response>invented</tool_response>"

    def _alternatives(self, text: str) -> str:
        if self.garbage_alternatives:
            return "no idea"
        visit = {
            "name": "visit",
            "arguments": {"url": ["https://example.org/wiki/peru"], "goal": "capital"},
        }
        bad = {"name": "teleport", "arguments": {}}
        search = {"name": "search", "arguments": {"query": ["largest city"]}}
        return (
            f"<think>Open a page.</think><tool_call>{json.dumps(visit)}</tool_call>\n### Option\n"
            f"<think>Teleport.</think><tool_call>{json.dumps(bad)}</tool_call>\n### Option\n"
            f"<think>Search differently.</think><tool_call>{json.dumps(search)}</tool_call>\n"
            "### Option\n<think>Guess.</think><answer>Oslo</answer>"
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Environment:
    cache = tmp_path_factory.mktemp("cache")
    return Environment(config=EnvironmentConfig(cache_dir=str(cache)), log=lambda _: None)


def test_rollouts_keep_real_tool_responses_and_judge_both_outcomes(env):
    config = AgentConfig(max_turns=4)
    records = rollout(QUESTIONS, LLMPolicy(ScriptedModel(), env.registry, config), env, config)
    by_id = {r["id"]: r for r in records}
    assert by_id["q-austria"]["prediction"] == "Vienna" and by_id["q-austria"]["correct"]
    assert by_id["q-peru"]["correct"]
    wrong = by_id["q-wrong"]
    assert wrong["prediction"] == "Szeged" and not wrong["correct"]
    assert wrong["judge"] == {"match": False, "llm": None, "correct": False, "judge_error": None}
    for record in records:
        search = record["steps"][0]
        assert search["tool"] == "search" and record["tool_calls"] == 1 and record["turns"] == 2
        again = env.execute(react.call_of(search)).text
        assert search["response"] == again and "## Web Results" in again  # the REAL response
        assert "invented" not in json.dumps(record["steps"])  # text after <answer> is ignored


def test_llm_judge_is_asked_only_when_matching_fails(env):
    config = AgentConfig(max_turns=4)
    model = ScriptedModel()
    records = rollout(QUESTIONS, LLMPolicy(model, env.registry, config), env, config, judge=model)
    wrong = next(r for r in records if r["id"] == "q-wrong")
    assert wrong["judge"]["llm"] is False and not wrong["correct"]
    right = next(r for r in records if r["id"] == "q-austria")
    assert right["judge"]["match"] and right["judge"]["llm"] is None


def test_bad_model_behaviour_is_counted_per_reason_and_never_stops_the_run(env):
    questions = [
        {"key": "m", "question": "malformed please"},
        {"key": "l", "question": "loop forever"},
        {"key": "c", "question": "What is the capital of Austria?"},
        {"key": "ok", "question": "What is the capital of Peru?"},
    ]
    config = AgentConfig(max_turns=6)
    small = AgentConfig(max_turns=6, max_prompt_chars=2500)
    policy = LLMPolicy(ScriptedModel(), env.registry, config)
    records = {r["key"]: r for r in run_agent(questions, policy, env, config)}
    assert records["m"]["failure"] == "malformed tool calls" and records["m"]["malformed"] == 2
    assert records["m"]["turns"] == 2 and records["m"]["tool_calls"] == 0
    assert records["l"]["failure"] == "loop" and records["l"]["tool_calls"] == 3
    assert records["ok"]["prediction"] == "Lima" and records["ok"]["failure"] is None
    tight = LLMPolicy(ScriptedModel(), env.registry, small)
    squeezed = run_agent(questions[2:3], tight, env, small)[0]
    assert squeezed["failure"] == "context exceeded"


def test_a_model_that_is_down_fails_each_rollout_with_a_reason(env):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    backend = OpenAICompatibleBackend(
        BackendConfig(type="openai", base_url=url, model="m", request_retries=0)
    )
    config = AgentConfig(max_turns=3)
    records = rollout(QUESTIONS[:2], LLMPolicy(backend, env.registry, config), env, config)
    assert [r["failure"] for r in records] == ["model unreachable"] * 2
    assert not any(r["correct"] for r in records)


def test_rollouts_resume_without_redoing_finished_items(env, tmp_path):
    config = AgentConfig(max_turns=4)
    model = ScriptedModel()
    policy = LLMPolicy(model, env.registry, config)
    out = tmp_path / "rollouts.jsonl"
    rollout_to_file(QUESTIONS[:2], out, policy, env, config, samples=2, batch_size=2, log=print)
    with out.open("a") as handle:
        handle.write('{"key": "torn')  # a kill in the middle of a line
    calls = model.calls
    rollout_to_file(QUESTIONS, out, policy, env, config, samples=2, batch_size=2, log=print)
    rows = read_rollouts(out)
    assert sorted(r["key"] for r in rows) == sorted(
        f"{q['id']}#{s}" for q in QUESTIONS for s in (0, 1)
    )
    assert model.calls - calls == 2  # only q-wrong's two samples ran: one batch, two turns


def _context(env, llm=None) -> StageContext:
    config = PipelineConfig()
    config.has_alternatives = 3
    return StageContext(config=config, llm=llm, env=env, seed=3, stage="has")


def _decisions(text: str) -> list[int]:
    """The number of options of each decision in a HAS text."""
    counts = []
    for block in text.split("Possible next steps:")[1:]:
        listing = block.split("I will choose option")[0]
        counts.append(len(re.findall(r"^Option \d+:$", listing, re.MULTILINE)))
    return counts


def test_llm_has_from_rollouts(env):
    ctx = _context(env, ScriptedModel())
    documents = ctx_docs = LLMHAS().run(QUESTIONS, ctx)
    assert len(ctx_docs) == 3
    outcomes = {d["question_id"]: d["text"].rsplit("\n", 1)[-1] for d in documents}
    assert outcomes == {
        "q-austria": "Outcome: Correct",
        "q-peru": "Outcome: Correct",
        "q-wrong": "Outcome: Incorrect",
    }
    counts = ctx.counters.counts["has"]
    assert incorrect_share(counts) == pytest.approx(1 / 3, abs=1e-3)
    assert ctx.counters.rejects["has"]["alternative unknown tool"] == 6  # teleport, every step
    for document in documents:
        assert _decisions(document["text"]) == [4, 4]  # 3 valid alternatives + the original
        first = document["text"].split("I will choose option", 1)[1]
        chosen = int(first.split(".", 1)[0])
        listing = document["text"].split("Possible next steps:", 1)[1]
        option = listing.split(f"Option {chosen}:\n", 1)[1]
        assert option.lstrip().startswith("<think>\nI search for")  # the original is chosen
        assert "<tool_response>\nA search for 'capital of" in first  # its real response follows


def test_failed_alternatives_never_make_a_one_option_step(env):
    model = ScriptedModel(garbage_alternatives=True)
    ctx = _context(env, model)
    documents = LLMHAS().run(QUESTIONS[:1], ctx)
    text = documents[0]["text"]
    assert "Possible next steps" not in text and "Option 1" not in text
    assert "Step 1.\n<think>" in text  # written as a plain step
    assert ctx.counters.counts["has"]["step without alternatives"] == 2
    assert ctx.counters.counts["has"]["alternatives retried"] == 4  # 2 steps x 2 retries


def test_heuristic_has_over_the_real_environment(env):
    questions = [
        {"id": "a", "question": "What is the capital of Austria?", "answer": "Vienna"},
        {"id": "b", "question": "Which river flows through Vienna?", "answer": "Danube"},
        {"id": "c", "question": "Which country has Budapest as its capital?", "answer": "Hungary"},
        {"id": "d", "question": "How long is the Danube?", "answer": "2,850 km"},
        {"id": "e", "question": "Who wrote the novel set on the Danube?", "answer": "Jules Verne"},
    ]
    ctx = _context(env)
    documents = HeuristicHAS().run(questions, ctx)
    counts = ctx.counters.counts["has"]
    assert counts["outcome_correct"] >= 1 and counts["outcome_incorrect"] >= 1  # both occur
    thoughts = []
    for document in documents:
        assert all(n >= 2 for n in _decisions(document["text"]))
        assert "<tool_response>\nA search for" in document["text"]
        thoughts += re.findall(r"<think>\n(.*?)\n</think>", document["text"])
    # no canned thoughts: every thought is written from its own content
    assert len(set(thoughts)) > 0.6 * len(thoughts)
    again = HeuristicHAS().run(questions, _context(env))
    assert [d["text"] for d in again] == [d["text"] for d in documents]  # deterministic


def test_heuristic_policy_is_a_real_agent(env):
    config = AgentConfig(max_turns=4)
    records = rollout(QUESTIONS[:1], HeuristicPolicy(4), env, config)
    assert [s.get("tool") for s in records[0]["steps"]] == ["search", "visit", None]
    assert records[0]["correct"]


def test_heuristic_reader_skips_the_page_header_and_wants_the_questions_year():
    """The CPU baseline's answer reading: a visited page's header (its url and title) is not a
    sentence to answer from; "Tokyo, Japan" gives "Tokyo"; a page about another year of the
    same event is not answered from while a search result is left to read."""
    from data_synthesis.agent.heuristic import answer_candidates, candidate_steps

    question = "Where were the 1964 Summer Olympics held?"
    page = (
        "The content of https://example.org/wiki/1964-summer-olympics (1964 Summer Olympics):\n"
        "The 1964 Summer Olympics were held in Tokyo, Japan, from 10 to 24 October 1964."
    )
    assert answer_candidates("Where did Albert Einstein study?", page.split("\n")[0] + "\n") == []
    assert answer_candidates(question, page)[0][1] == "Tokyo"
    search = {
        "tool": "search",
        "arguments": {"query": ["1964 Summer Olympics held"]},
        "response": "1. [1972 Summer Olympics](https://example.org/wiki/1972-summer-olympics)\n"
        "2. [1964 Summer Olympics](https://example.org/wiki/1964-summer-olympics)",
    }
    other_year = {
        "tool": "visit",
        "ok": True,
        "arguments": {"url": ["https://example.org/wiki/1972-summer-olympics"]},
        "response": "The content of https://example.org/wiki/1972-summer-olympics (1972 Summer "
        "Olympics):\nThe 1972 Summer Olympics were held in Munich, West Germany.",
    }
    first = candidate_steps(question, [search, other_year])[0]
    assert first["tool"] == "visit" and first["arguments"]["url"] == [
        "https://example.org/wiki/1964-summer-olympics"
    ]
    right_year = {**other_year, "arguments": {"url": [first["arguments"]["url"][0]]}}
    right_year["response"] = page
    assert candidate_steps(question, [search, other_year, right_year])[0]["answer"] == "Tokyo"


def test_heuristic_reader_reads_prose_and_what_follows_the_question(env):
    """READMEs nobody here wrote (`make_machine_corpus.py --source package-readmes`) gave the CPU
    baseline 3 Correct outcomes of 367: it read "## License\\nThe Abseil ..." as one sentence
    and answered "License", and took a search response's own first line ("A search for ...
    found 10 results:") for a sentence of the snippets. A heading, code and the response's own
    lines are not read; the answer is what the sentence says after the question's words, and
    a number ends where its digits do ("1932, and the" gave "1932, and the")."""
    from data_synthesis.agent.heuristic import answer_candidates, candidate_steps

    question = "What is the Abseil Python library licensed under?"
    page = (
        "The content of https://pypi.org/project/absl-py/ (absl-py):\n## License\n"
        "The Abseil Python library is licensed under the terms of the Apache license.\n\n"
        "```python\nlicense = 'Apache'  # the Abseil Python library\n```"
    )
    assert answer_candidates(question, page) == [
        (
            "The Abseil Python library is licensed under the terms of the Apache license.",
            "the terms of the Apache license",
        )
    ]
    bridge = "The Sydney Harbour Bridge was opened in 1932, and the bridge carries rail."
    assert answer_candidates("When was the Sydney Harbour Bridge opened?", bridge)[0][1] == "1932"
    search = "capital Austria"
    response = env.execute({"name": "search", "arguments": {"query": [search]}}).text
    assert response.startswith(f"A search for '{search}'")
    steps = [{"tool": "search", "arguments": {"query": [search]}, "response": response}]
    answers = [
        s for s in candidate_steps("What is the capital of Austria?", steps) if "answer" in s
    ]
    assert answers and all("A search for" not in s["thought"] for s in answers)
    assert answers[0]["answer"] == "Vienna"


def test_heuristic_reader_answers_with_words_not_markup():
    """On READMEs nobody here wrote, the CPU baseline offered answers cut from markdown: ")" after
    a badge's link, "[garbage" from a snippet cut mid-link, "`" and values spread over a wrapped
    line. An answer is a value on one line without the marks around it, and has a word."""
    from data_synthesis.agent.heuristic import _answer_text, answer_candidates

    badge = "[![Package version](https://img.shields.io/pypi/v/absl-py)](https://pypi.org/absl-py)"
    assert all(
        any(ch.isalnum() for ch in answer)
        for _, answer in answer_candidates("What is absl-py collected from?", badge + "\n")
    )
    wrapped = "- A test client for simulating HTTP requests during\n    testing without a server."
    question = "What does a test client for simulating HTTP requests during?"
    assert answer_candidates(question, wrapped)[0][1] == "testing without a server"
    cut = "By default the library closes underlying HTTP connections when the client is [garbage"
    answers = [a for _, a in answer_candidates("When does the library close connections?", cut)]
    assert answers and all("[" not in a for a in answers)
    assert _answer_text("`httpcore`") == "httpcore"  # marks that only enclose the answer
    assert _answer_text("the") is None  # "URL.host returns the" cut before its object
    for kept in ("`MinLen(x)` and `MaxLen(y)`", "the [proposal](https://x.org/p)"):
        assert _answer_text(kept) == kept  # pairs inside it


def test_heuristic_reader_reads_the_page_as_rendered():
    """READMEs mix markdown and HTML: answers were read from the markup itself (a badge's url
    '.svg?color=blue"></a', '💻 GitHub</a>'). The reader reads a sentence as the rendered page
    shows it: a link shows its text, images and tags show nothing, so a line of badges has no
    answer, and the sentence it quotes is the shown one."""
    from data_synthesis.agent.heuristic import _answer_text, answer_candidates

    badges = (
        '<a href="https://github.com/org/accelerate/blob/main/LICENSE"><img alt="License" '
        'src="https://img.shields.io/github/license/org/accelerate.svg?color=blue"></a>\n'
        "[![PyPI version](https://img.shields.io/pypi/v/cwevals.svg?label=pypi%20(stable))]"
        "(https://pypi.org/project/cwevals/)\n"
    )
    assert answer_candidates("What is the license of accelerate?", badges) == []
    linked = (
        "This is the alternative form of the [`typing-doc` proposal]"
        "(https://github.com/org/fastapi/blob/typing-doc/typing_doc.md).\n"
    )
    [(sentence, answer)] = answer_candidates("What is this the alternative form of?", linked)
    assert sentence == "This is the alternative form of the typing-doc proposal."
    assert answer == "the typing-doc proposal"
    html = '<i>BM25S is an ultrafast implementation of BM25 in <b>pure Python</b></i> <a href="x">'
    [(sentence, answer)] = answer_candidates("What is BM25S an implementation of?", html + "\n")
    assert (sentence, answer) == (
        "BM25S is an ultrafast implementation of BM25 in pure Python",
        "BM25",
    )
    # a sentence cut inside a tag or url leaves pieces of markup that are no answer
    # (and "@gmail.com" of "* Pearu Peterson <pearu.peterson@gmail.com>", 2026-12-07)
    pieces = ("/releases/", ".9+", ".core", '.svg"> <img alt="Build', "x%20y z", 'width="4"')
    for piece in (*pieces, "@gmail.com"):
        assert _answer_text(piece) is None, piece
    for kept in (".NET Framework", "config.yaml", "3.9+", "@pytest.fixture"):
        assert _answer_text(kept) == kept
    # tags are known HTML names: an autolink and a type's parameter stay
    from data_synthesis.memory import unmarked

    for kept in ("at <https://github.com/org/x/issues>", "a List<String> of names"):
        assert unmarked(kept) == kept


def test_queries_leave_modals_out():
    """ "What may Len be used with?" made the scripted agent search for "may used" and the
    baseline's plans query "may"; a modal is no keyword, as "does" and "is" were not."""
    from data_synthesis.agent.heuristic import keywords
    from data_synthesis.fas.planning import _terms

    assert keywords("What may Len be used with?") == ["Len", "used"]
    assert _terms("What can Ruff be configured through?") == ["ruff", "configured", "through"]
