"""The held-out split of synthesized questions, by source document.

A document is held out when a hash of (seed, its id) falls below `share`; a question is held out
when ANY of its source documents is, and then it never becomes training data (no FAS/HAS document
is built from it), while training questions have no held-out source document at all. Rollouts
that make training data run with the held-out documents hidden from the tools (`HeldoutRule`,
by id, or a listed `EnvironmentConfig.exclude_docs_file`), so no held-out page reaches a
training text through a tool response either; the evaluation runs with the whole corpus.
Deterministic: the same seed gives the same split on any number of machines, without
coordination.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path


def heldout_doc(doc_id: str, share: float, seed: int) -> bool:
    digest = hashlib.sha256(f"heldout:{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def base_doc_id(doc_id: str) -> str:
    """The input document of a chunk id ("<id>#c3" -> "<id>")."""
    return re.sub(r"#c\d+$", "", str(doc_id))


class HeldoutRule:
    """The held-out documents as a rule, not a list: `doc_id in rule` hashes the id (a chunk
    "<id>#c3" is its document's), so a task that hides them holds nothing per document,
    whatever the corpus's size."""

    def __init__(self, share: float, seed: int):
        self.share, self.seed = share, seed

    def __contains__(self, doc_id: str) -> bool:
        return heldout_doc(base_doc_id(doc_id), self.share, self.seed)


def question_docs(question: dict) -> list[str]:
    docs = question.get("source_docs") or [
        s.get("source") for s in question.get("supporting", []) if s.get("source")
    ]
    return [str(d) for d in docs]


def split_questions(questions: list[dict], share: float, seed: int) -> tuple[list, list]:
    """(train, heldout): held out when any source document is held out."""
    train, heldout = [], []
    for question in questions:
        docs = question_docs(question)
        held = any(heldout_doc(d, share, seed) for d in docs)
        (heldout if held else train).append(question)
    return train, heldout


def write_heldout_docs(doc_ids, share: float, seed: int, path: str | Path) -> int:
    """The held-out document ids, one per line (EnvironmentConfig.exclude_docs_file)."""
    held = sorted({str(d) for d in doc_ids if heldout_doc(str(d), share, seed)})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{d}\n" for d in held), encoding="utf-8")
    return len(held)
