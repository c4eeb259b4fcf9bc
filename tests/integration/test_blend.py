"""Blend YAML -> megatron-core GPTDatasets: weights honoured, deterministic, bad files named."""

from __future__ import annotations

import numpy as np
import pytest

from megatron_agentic.data.blend import BlendError, build_gpt_datasets, load_blend
from megatron_agentic.testing.data_fixtures import make_texts, make_tokenizer, write_jsonl
from megatron_agentic.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from tools.preprocess_data import main

    root = tmp_path_factory.mktemp("blend")
    tokenizer = make_tokenizer(root / "tok")
    for name, seed in (("fas", 1), ("has", 2), ("general", 3)):
        corpus = write_jsonl(root / f"{name}.jsonl", make_texts(200, seed=seed))
        assert (
            main(
                [
                    "--input",
                    str(corpus),
                    "--output-prefix",
                    str(root / name),
                    "--tokenizer-type",
                    "HuggingFaceTokenizer",
                    "--tokenizer-model",
                    str(tokenizer),
                    "--append-eod",
                ]
            )
            == 0
        )
    (root / "stage1.yaml").write_text(
        'split: "90,10,0"\n'
        "datasets:\n"
        "  - {name: fas, prefix: fas_text_document, weight: 40}\n"
        "  - {name: has, prefix: has_text_document, weight: 30}\n"
        "  - {name: general, prefix: general_text_document, weight: 30}\n"
    )
    return root


def test_blend_builds_weighted_deterministic_gpt_datasets(data_dir):
    blend = load_blend(data_dir / "stage1.yaml")
    assert [d.weight for d in blend.datasets] == [40, 30, 30]
    tokenizer = build_tokenizer("HuggingFaceTokenizer", data_dir / "tok")

    def build(cache):
        return build_gpt_datasets(
            blend,
            tokenizer,
            seq_length=32,
            seed=7,
            num_samples=(200, 20, 0),
            cache_dir=data_dir / cache,
        )

    train, valid, test = build("cache_a")
    assert len(train) >= 200 and len(valid) >= 20 and test is None
    sample = train[0]
    assert sample["tokens"].shape == (32,) and sample["labels"].shape == (32,)
    assert np.array_equal(sample["tokens"][1:], sample["labels"][:-1])
    counts = np.bincount(train.dataset_index[:200], minlength=3) / 200
    assert counts == pytest.approx([0.4, 0.3, 0.3], abs=0.02)
    again, _, _ = build("cache_b")
    for i in (0, 17, 199):
        assert np.array_equal(again[i]["tokens"], train[i]["tokens"])


@pytest.mark.parametrize(
    "content, message",
    [
        ("datasets: []\n", "needs a non-empty list under 'datasets'"),
        ("datasets:\n  - {prefix: fas_text_document, weight: -1}\n", "datasets[0].weight"),
        ("datasets:\n  - {prefix: missing_text_document, weight: 1}\n", "datasets[0].prefix"),
        ("datasets:\n  - {prefix: fas_text_document}\n", "missing keys ['weight']"),
        ("datasets:\n  - {prefix: fas_text_document, weight: 1}\nsplits: 1\n", "unknown key"),
        ('split: "90,10"\ndatasets:\n  - {prefix: fas_text_document, weight: 1}\n', "split"),
        ("datasets: [\n", "not valid YAML"),
    ],
)
def test_bad_blend_names_file_and_key(data_dir, content, message):
    path = data_dir / "bad.yaml"
    path.write_text(content)
    with pytest.raises(BlendError) as error:
        load_blend(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_stats_command(data_dir, capsys):
    from tools.dataset_stats import main

    assert main(["--blend", str(data_dir / "stage1.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and "docs=200" in out[0] and "weight=40" in out[0] and "p99=" in out[0]


def test_data_mixture_example_runs_as_documented(tmp_path, capsys):
    """examples/data_mixture: the README's CPU commands, on a copy of the folder; both blends name
    only datasets those commands make (no `has_long`); a missing dataset is one error line."""
    import re
    import shutil
    from pathlib import Path

    from tools.dataset_stats import main as stats
    from tools.preprocess_data import main as preprocess

    example = Path("examples/data_mixture")
    readme = (example / "README.md").read_text()
    folder = tmp_path / "data_mixture"
    shutil.copytree(example, folder, ignore=shutil.ignore_patterns("tok"))
    assert stats(["--blend", str(folder / "stage1.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tok/fas_text_document.bin/.idx" in err
    cpu_block = readme.split("```bash")[2].split("```")[0]
    args = re.search(r"preprocess_data\.py (.*?)\ndone", cpu_block, re.S).group(1).split()
    for name in ("fas", "has", "general"):
        argv = [a.replace("\\", "") for a in args if a != "\\"]
        argv = [
            a.replace("examples/data_mixture", str(folder)).replace("$name", name) for a in argv
        ]
        assert preprocess(argv) == 0
    for stage in ("stage1", "stage2"):
        assert f"dataset_stats.py --blend examples/data_mixture/{stage}.yaml" in cpu_block
        assert stats(["--blend", str(folder / f"{stage}.yaml")]) == 0
        assert capsys.readouterr().out.count("docs=9") == 3
