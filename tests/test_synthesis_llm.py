"""The LLM paths: strict JSON parsing with retries (scripted replies, parser only) and a real
transformers backend on a tiny random Qwen3 whose noise goes through parse -> retry -> drop."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from data_synthesis.__main__ import main
from data_synthesis.llm.json_task import SchemaError, parse_json_reply, require, run_json_task
from data_synthesis.shards import read_jsonl


class ScriptedReplies:
    """Returns prepared replies in order: only for testing the parser and retry logic."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = 0

    def generate(self, prompts, seed):
        self.calls += 1
        return [self.replies.pop(0) for _ in prompts]


def check_plan(obj):
    require(obj, analysis=str, tool_call=dict)


def test_parser_accepts_json_in_prose_and_rejects_bad_shapes():
    obj = parse_json_reply(
        'Sure! {"analysis": "a", "tool_call": {"name": "search"}} done', check_plan
    )
    assert obj["tool_call"]["name"] == "search"
    for reply, reason in [
        ("no json here", "no JSON object"),
        ('{"analysis": 1}', "key 'analysis'"),
        ('{"analysis": "a"', "no JSON object"),
        ('{"a": }', "invalid JSON"),
    ]:
        with pytest.raises(SchemaError, match=reason):
            parse_json_reply(reply, check_plan)


def test_retry_then_drop_is_counted():
    good = '{"analysis": "a", "tool_call": {"name": "search", "arguments": {}}}'
    # attempt 1: both bad; attempt 2: p1 good, p2 bad; attempt 3: p2 bad again -> dropped
    backend = ScriptedReplies(["garbage", "still garbage", good, "{}", "nope"])
    rejects = Counter()
    results = run_json_task(
        backend, ["p1", "p2"], check_plan, seed=0, max_retries=2, rejects=rejects
    )
    assert results[0]["analysis"] == "a" and results[1] is None
    assert backend.calls == 3
    assert rejects == Counter({"malformed output: no JSON object in the reply": 1})


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from tests.data_fixtures import make_tokenizer

    directory = tmp_path_factory.mktemp("qwen3") / "tiny"
    make_tokenizer(directory, vocab_size=300)
    torch.manual_seed(0)
    Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=300,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=64,
            max_position_embeddings=4096,
        )
    ).save_pretrained(directory)
    return directory


def test_transformers_backend_noise_is_dropped_and_shards_complete(tiny_qwen3, tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        "".join(
            json.dumps(d) + "\n"
            for d in [
                {
                    "id": "d1",
                    "title": "Vienna",
                    "text": "Vienna is the capital of Austria. Vienna lies on the Danube.",
                },
                {
                    "id": "d2",
                    "title": "Austria",
                    "text": "The capital of Austria is Vienna. Austria has a population of about 9.1 million.",
                },
                {
                    "id": "d3",
                    "title": "Danube",
                    "text": "The Danube is a river about 2,850 kilometres long. The Danube flows into the Black Sea.",
                },
            ]
        )
    )
    config = tmp_path / "llm.yaml"
    config.write_text(
        f"plans_per_question: 2\nbackend:\n  type: transformers\n  model: {tiny_qwen3}\n"
        "  max_tokens: 12\n  max_retries: 1\n  batch_size: 4\n"
        "questions:\n  per_entity: 1\n"
    )
    out = tmp_path / "out"
    for stage in ("memory", "questions", "planning", "reasoning"):
        assert (
            main([stage, "--input", str(corpus), "--output", str(out), "--config", str(config)])
            == 0
        )
    memory = read_jsonl(out / "memory" / "memory.jsonl")
    assert len(memory) == 3 and all("llm reply unusable" in r["extractor"] for r in memory)
    planning = read_jsonl(next((out / "planning").glob("planning-*.jsonl")))
    reasoning = read_jsonl(next((out / "reasoning").glob("reasoning-*.jsonl")))
    assert planning and all(r == {"rejected": "malformed output"} for r in planning)
    assert reasoning and all(r == {"rejected": "malformed output"} for r in reasoning)
