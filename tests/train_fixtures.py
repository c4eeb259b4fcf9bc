"""A small preprocessed dataset + blend + tokenizer for trainer tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

from tests.data_fixtures import make_texts, make_tokenizer, write_jsonl


def make_training_data(root: Path) -> tuple[Path, Path]:
    """(blend YAML, tokenizer dir) of a 2-dataset blend made by tools/preprocess_data.py."""
    from tools.preprocess_data import main

    tokenizer = make_tokenizer(root / "tokenizer", vocab_size=400)
    for name, seed in (("agentic", 11), ("general", 12)):
        corpus = write_jsonl(root / f"{name}.jsonl", make_texts(400, seed=seed, words=120))
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
                    "--log-interval",
                    "1000000",
                ]
            )
            == 0
        )
    blend = root / "blend.yaml"
    blend.write_text(
        'split: "95,5,0"\ndatasets:\n'
        "  - {name: agentic, prefix: agentic_text_document, weight: 70}\n"
        "  - {name: general, prefix: general_text_document, weight: 30}\n"
    )
    return blend, tokenizer
