"""Train a small byte-level BPE tokenizer locally and save it as a Hugging Face tokenizer directory.

For CPU runs and tests, where no tokenizer can be downloaded: the result loads with
`AutoTokenizer.from_pretrained(dir)` and with our `HuggingFaceTokenizer`, uses Qwen3's end-of-document
token `<|endoftext|>`, and keeps the ReAct trajectory tags (`<think>`, `<tool_call>`, ...) as single
tokens, as Qwen3's own tokenizer does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

EOD = "<|endoftext|>"
SPECIAL_TOKENS = [
    EOD,
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<answer>",
    "</answer>",
]


def train_bpe_tokenizer(
    texts: Iterable[str], output_dir: str | Path, vocab_size: int = 512
) -> Path:
    """Train byte-level BPE on `texts` and save tokenizer.json + tokenizer_config.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOD,
        pad_token=EOD,
        bos_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
    ).save_pretrained(output_dir)
    return output_dir


def jsonl_texts(paths: Iterable[str | Path], key: str = "text") -> Iterator[str]:
    """The `key` field of every line of the given JSONL files."""
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)[key]
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    raise ValueError(
                        f"{path}:{line_number}: no string field {key!r}: {error}"
                    ) from error
