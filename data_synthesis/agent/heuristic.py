"""A scripted heuristic agent over the real environment (the CPU baseline, no LLM).

At each step `candidate_steps(question, steps)` lists plausible next decisions, all grounded in
what the environment really returned so far: searches with differently chosen keywords (or a
title seen in the results), visits of the result pages, answers read from different sentences of
a visited page. The agent takes the best-ranked candidate; HAS (has/synthesis.py) takes other
candidates of the same list as alternatives. Thoughts are written from the content of each
candidate by the same few functions, so an alternative cannot be told from the chosen step by its
wording - only by whether it is the better decision.

The agent is right on some questions and wrong on others (answer extraction is a word-overlap
guess), which is what HAS needs: both Correct and Incorrect outcomes from real trajectories.
"""

from __future__ import annotations

import functools
import re
import zlib

from data_synthesis.memory import QUERY_STOP, prose_sentences, unmarked, value_phrase

_WORD = re.compile(r"[A-Za-z0-9][\w'-]*")
_WORD_OR_BREAK = re.compile(r"[A-Za-z0-9][\w'-]*|[,;:()]")
_PAGE_HEADER = re.compile(r"^The content of \S+ \(.*?\):\n")  # environment/executor.py
_RESULT = re.compile(r"^\d+\. \[(?P<title>[^\]]*)\]\((?P<url>[^)]*)\)", re.MULTILINE)
# a search response's own lines (environment/executor.py): what remains are the snippets
_SEARCH_FRAME = re.compile(
    r"^(?:A search for .* found \d+ results:|## Web Results|\d+\. \[.*)$", re.M
)
# a number (its commas and points between digits: "1932, and the" is 1932) and its unit words
_NUMBER = re.compile(r"\d+(?:[,.]\d+)*(?:\s+(?:million|billion|thousand))?(?:\s+[a-z]+){0,2}")
NUMERIC_CUES = ("how many", "how much", "how long", "how high", "how tall", "population", "area")
NUMERIC_CUES += ("what year", "which year", "when ", "how old", "length", "height")


def keywords(question: str) -> list[str]:
    """Content words of a question, in order, without duplicates."""
    words = [w for w in _WORD.findall(question) if w.lower() not in QUERY_STOP]
    return list(dict.fromkeys(words))


def results_of(response: str) -> list[tuple[str, str]]:
    """(title, url) of each search result in a search tool response, in rank order."""
    return [(m.group("title"), m.group("url")) for m in _RESULT.finditer(response or "")]


def _focus(question: str) -> str:
    return " ".join(keywords(question)[:4]) or question


def search_step(question: str, query: str) -> dict:
    thought = f'I need facts about {_focus(question)}; a search for "{query}" should find them.'
    return {"thought": thought, "tool": "search", "arguments": {"query": [query]}}


def visit_step(question: str, title: str, url: str) -> dict:
    thought = f'The result "{title}" may state what the question asks; I read that page.'
    return {
        "thought": thought,
        "tool": "visit",
        "arguments": {"url": [url], "goal": question},
    }


def answer_step(sentence: str, candidate: str) -> dict:
    thought = f'The source says: "{sentence.strip()[:200]}". So the answer is {candidate}.'
    return {"thought": thought, "answer": candidate}


def answer_candidates(question: str, text: str, limit: int = 3) -> list[tuple[str, str]]:
    """(sentence, candidate answer) from the sentences of `text` that share the most words
    with the question; the candidate is what the sentence adds to the question."""
    return [(sentence, candidate) for _, sentence, candidate in _readings(question, text, limit)]


def _score(asked: set[str], sentence: str) -> int:
    """Words shared with the question; a number the question names ("1896") counts double,
    since a sentence about another year of the same event shares every other word."""
    shared = asked & set(_WORD.findall(sentence.lower()))
    return len(shared) + sum(w[0].isdigit() for w in shared)


@functools.lru_cache(maxsize=1024)  # the agent re-reads the same pages every turn
def _readings(question: str, text: str, limit: int) -> tuple[tuple[int, str, str], ...]:
    """(score, sentence, candidate) of the best prose sentences of `text` (not code, a table
    row or a heading; nor a visited page's header line - its url and title)."""
    asked = {w.lower() for w in keywords(question)}
    numeric = any(cue in question.lower() for cue in NUMERIC_CUES)
    text = _PAGE_HEADER.sub("", text, count=1)
    scored = []
    for start, end in prose_sentences(text):
        sentence = " ".join(unmarked(text[start:end]).split())  # as the rendered page shows it
        if sentence.startswith("#") or not sentence:
            continue
        score = _score(asked, sentence)
        if score:
            scored.append((-score, len(scored), sentence))
    out: list[tuple[int, str, str]] = []
    for score, _, sentence in sorted(scored):
        candidate = _candidate(sentence, asked, numeric)
        if candidate and candidate.lower() not in {c.lower() for *_, c in out}:
            out.append((-score, sentence, candidate))
        if len(out) >= limit:
            break
    return tuple(out)


# what an answer cut from a page's markdown may carry at its ends
_PAIRS = {mark: pair for pair in ("()", "[]", "<>", "``", "**", "__", '""') for mark in pair}
_LOOSE = " |#,;:!"
# what a sentence says before its object: "is", "was", "by", "under" ...
_LEAD_IN = re.compile(r"^(?:\s*\b(?:is|are|was|were|by|of|in|on|at|to|under|from|as|for|with)\b)+")
# a piece of a url, path, tag or number that a value cut inside it left: "/releases/",
# ".9+" (of "3.9+"), ".core", 'badge.svg"> <img alt="Build', "TypeError >>> orjson.dumps(",
# 'width="400"', "@gmail.com" of an e-mail address (".NET", "config.yaml" and "@pytest.fixture"
# are answers)
_MARKUP_PIECE = re.compile(
    r"^(?:\.(?![A-Z])|/)|[<>]|=\"|%[0-9A-Fa-f]{2}|\.(?:svg|png|gif|jpe?g)\b"
    r"|^@[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|io)$"
)


def _said_after(sentence: str, asked: set[str]) -> str | None:
    """The object phrase after the last word the sentence shares with the question that has
    one (a verb matched by its first five letters): "What is X licensed under?" on "X is
    licensed under the terms of the Apache license." -> "the terms of the Apache license"."""
    stems = {word[:5] for word in asked if len(word) >= 5}
    shared = [
        match
        for match in _WORD.finditer(sentence)
        if match.group(0).lower() in asked
        or (len(match.group(0)) >= 5 and match.group(0).lower()[:5] in stems)
    ]
    for match in reversed(shared):
        value, _ = value_phrase(_LEAD_IN.sub("", sentence[match.end() :]).strip())
        value = _answer_text(value.split(",")[0])  # a list's first name: "Tokyo, Japan" -> "Tokyo"
        if value:
            return value if len(value.split()) <= 8 else None
    return None


def _answer_text(value: str) -> str | None:
    """A read value as an answer: on one line, without the marks at its ends that pair with
    nothing in it (a badge link's ")", a snippet cut mid-link's "[garbage", a list's comma) or
    that only enclose it ("`httpcore`"); None when no word but a stop word ("the") is left, or
    when it is a piece of a tag, url or number that a cut inside it left (_MARKUP_PIECE).
    Pairs inside stay: "`MinLen(x)` and `MaxLen(y)`", "[proposal](https://...)"."""
    value = " ".join(value.split())
    while value:
        first, last = value[0], value[-1]
        if first in _LOOSE or _unpaired(value, first):
            value = value[1:]
        elif last in _LOOSE or _unpaired(value, last):
            value = value[:-1]
        elif len(value) > 2 and _encloses(value):
            value = value[1:-1]
        else:
            break
    return value if keywords(value) and not _MARKUP_PIECE.search(value) else None


def _unpaired(value: str, mark: str) -> bool:
    """Whether a mark at an end of `value` has no partner in it."""
    if mark not in _PAIRS:
        return False
    opener, closer = _PAIRS[mark]
    if opener == closer:
        return value.count(mark) % 2 == 1
    return value.count(opener) != value.count(closer)


def _encloses(value: str) -> bool:
    """Whether the first and last characters are a pair, the only one of its kind in `value`."""
    pair, inner = _PAIRS.get(value[0]), value[1:-1]
    return (
        pair is not None and value[-1] == pair[1] and pair[0] not in inner and pair[1] not in inner
    )


def _candidate(sentence: str, asked: set[str], numeric: bool) -> str | None:
    if numeric:
        number = _NUMBER.search(sentence)
        if number:
            return number.group(0).rstrip(".,; ")
    said = _said_after(sentence, asked)
    if said:
        return said
    words = _WORD.findall(sentence)
    runs, run = [], []
    for word in _WORD_OR_BREAK.findall(sentence):  # "Tokyo, Japan": two runs, not "Tokyo Japan"
        new = word[0].isalnum() and word.lower() not in asked and word.lower() not in QUERY_STOP
        if new and word[0].isupper():
            run.append(word)
            continue
        if run:
            runs.append(" ".join(run))
        run = []
    if run:
        runs.append(" ".join(run))
    if runs:
        return runs[0]
    rest = [w for w in words if w.lower() not in asked and w.lower() not in QUERY_STOP]
    return " ".join(rest[:3]) or None


def candidate_steps(question: str, steps: list[dict], final: bool = False) -> list[dict]:
    """Plausible next decisions after `steps`, best first, none repeating an earlier call."""
    made = {repr(s.get("arguments")) for s in steps if s.get("tool")}
    pages = [s for s in steps if s.get("tool") == "visit" and s.get("ok")]
    results = [r for s in steps if s.get("tool") == "search" for r in results_of(s["response"])]
    candidates: list[dict] = []
    readings = [r for page in pages[::-1] for r in _readings(question, page["response"], 3)]
    readings.sort(key=lambda r: -r[0])  # the best sentence of any page read, latest on ties
    answers = [answer_step(sentence, candidate) for _, sentence, candidate in readings]
    numbers = {w.lower() for w in keywords(question) if w[0].isdigit()}
    sure = bool(readings) and numbers <= set(_WORD.findall(readings[0][1].lower()))
    candidates += answers if sure or final else []
    if not final:
        visited = {u for s in pages for u in s["arguments"]["url"]}
        candidates += [visit_step(question, t, u) for t, u in results if u not in visited][:4]
        if not sure:  # no page read yet states the question's numbers: read another first
            candidates += answers
        words = keywords(question)
        queries = [" ".join(words)] + [" ".join(words[:i] + words[i + 1 :]) for i in range(2)]
        queries += [f"{t} {' '.join(words[:3])}" for t, _ in results[:2]]
        queries = [q for q in dict.fromkeys(queries) if q.strip()]
        if not steps and queries:  # which wording comes first depends on the question, so the
            turn = zlib.crc32(question.encode()) % len(queries)  # taken one is not always longest
            queries = queries[turn:] + queries[:turn]
        candidates += [search_step(question, q) for q in queries]
    snippets = "\n\n".join(
        _SEARCH_FRAME.sub("", s["response"]) for s in steps if s.get("tool") == "search"
    )
    if snippets:
        candidates += [answer_step(s, c) for s, c in answer_candidates(question, snippets, 2)]
    unique, seen = [], set()
    for step in candidates:
        key = repr(step.get("arguments")) if step.get("tool") else "answer:" + step["answer"]
        if key in seen or (step.get("tool") and repr(step["arguments"]) in made):
            continue
        seen.add(key)
        unique.append(step)
    return unique or [answer_step(question, "unknown")]


class HeuristicPolicy:
    """The scripted agent as a policy of the agent loop (agent/loop.py): returns step dicts."""

    def __init__(self, max_turns: int):
        self.max_turns = max_turns

    def replies(self, states, turn: int) -> list[dict]:
        final = turn >= self.max_turns - 1
        return [candidate_steps(s.question, s.steps, final)[0] for s in states]

    def close(self) -> None:
        pass
