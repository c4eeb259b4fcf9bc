"""Question files with gold answers, in the layouts of public agentic benchmarks.

One JSON object per line (or a JSON list in a .json file), layout detected per record:
- ours (synthesized questions): {"id", "question", "answer", ...}
- BrowseComp-style:             {"problem", "answer", ...}
- GAIA-style:                   {"task_id"?, "Question", "Final answer", ...}
A record with none of these pairs is an error naming file:line and the missing field, before
anything runs. Ids default to "<file stem>:<line>". A folder is one set of its .jsonl/.json
files in name order: a large synthesis run's held-out questions, one file per partition
(OUT/eval/heldout_questions/), are one set named after the folder, not one set per file.
"""

from __future__ import annotations

import json
from pathlib import Path

LAYOUTS = (  # (name, question field, answer field, id field)
    ("synthesized", "question", "answer", "id"),
    ("browsecomp", "problem", "answer", "id"),
    ("gaia", "Question", "Final answer", "task_id"),
)


class QuestionFileError(ValueError):
    """A question file that cannot be read; the message names file:line."""


def _layout(record: dict, where: str) -> tuple[str, str, str, str]:
    for layout in LAYOUTS:
        if layout[1] in record:
            missing = layout[2]
            if missing not in record or not str(record[missing]).strip():
                raise QuestionFileError(
                    f"{where}: missing field {missing!r} ({layout[0]} layout: "
                    f"{layout[1]!r} + {layout[2]!r})"
                )
            if not str(record[layout[1]]).strip():
                raise QuestionFileError(f"{where}: empty field {layout[1]!r}")
            return layout
    raise QuestionFileError(
        f"{where}: no question field; expected one of 'question' (+ 'answer'), "
        f"'problem' (+ 'answer', BrowseComp) or 'Question' (+ 'Final answer', GAIA); "
        f"got keys {sorted(record)[:8]}"
    )


def _records(path: Path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise QuestionFileError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
        if not isinstance(data, list):
            raise QuestionFileError(f"{path}: a .json question file must hold a list")
        yield from ((f"{path}[{i}]", i + 1, r) for i, r in enumerate(data))
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", number, json.loads(line)
        except json.JSONDecodeError as error:
            raise QuestionFileError(f"{path}:{number}: invalid JSON ({error.msg})") from None


def question_files(path: Path) -> list[Path]:
    """The files of a question set: `path` itself, or a folder's .jsonl/.json files by name."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise QuestionFileError(f"{path}: no such question file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".jsonl", ".json"))
    if not files:
        raise QuestionFileError(f"{path}: a folder with no .jsonl or .json question file")
    return files


def load_questions(path: str | Path, limit: int | None = None) -> list[dict]:
    """{"id", "question", "answer", "layout", "source_docs"} per record of one file, or of a
    folder's files (question_files)."""
    path = Path(path)
    out, ids = [], set()
    for file in question_files(path):
        for where, number, record in _records(file):
            if not isinstance(record, dict):
                raise QuestionFileError(f"{where}: expected a JSON object")
            name, q_field, a_field, id_field = _layout(record, where)
            qid = str(record.get(id_field) or f"{file.stem}:{number}")
            if qid in ids:
                raise QuestionFileError(f"{where}: duplicate id {qid!r}")
            ids.add(qid)
            out.append(
                {
                    "id": qid,
                    "question": str(record[q_field]).strip(),
                    "answer": str(record[a_field]).strip(),
                    "layout": name,
                    "source_docs": record.get("source_docs", []),
                }
            )
            if limit and len(out) >= limit:
                return out
    if not out:
        raise QuestionFileError(f"{path}: no questions")
    return out
