"""Quality filters over the final training documents: exact and near-duplicate removal (MinHash
LSH from `datasketch`), and n-gram decontamination against user-given evaluation sets."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _minhash(text: str, num_perm: int = 128) -> MinHash:
    words = _words(text)
    shingles = {" ".join(words[i : i + 5]) for i in range(max(1, len(words) - 4))}
    signature = MinHash(num_perm=num_perm, seed=1)
    for shingle in shingles:
        signature.update(shingle.encode())
    return signature


def deduplicate(documents: list[dict], threshold: float, removed: Counter) -> list[dict]:
    """Drop exact duplicates, then documents whose MinHash Jaccard estimate to a kept one is
    above `threshold` (the first occurrence is kept; order is preserved)."""
    seen_exact, kept = set(), []
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    for index, document in enumerate(documents):
        digest = hashlib.sha256(document["text"].encode()).hexdigest()
        if digest in seen_exact:
            removed["exact duplicate"] += 1
            continue
        seen_exact.add(digest)
        signature = _minhash(document["text"])
        if lsh.query(signature):
            removed["near duplicate"] += 1
            continue
        lsh.insert(str(index), signature)
        kept.append(document)
    return kept


def decontaminate(
    documents: list[dict], eval_texts: list[str], n: int, removed: Counter
) -> list[dict]:
    """Drop documents sharing any word n-gram with an evaluation text."""
    if not eval_texts:
        return documents
    grams = set()
    for text in eval_texts:
        words = _words(text)
        grams.update(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    kept = []
    for document in documents:
        words = _words(document["text"])
        if any(" ".join(words[i : i + n]) in grams for i in range(len(words) - n + 1)):
            removed["contaminated"] += 1
        else:
            kept.append(document)
    return kept
