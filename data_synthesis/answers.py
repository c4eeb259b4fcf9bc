"""Answer normalisation, matching and leak detection: one place for every stage that compares text
with a gold answer (question checks, plan checks, the reasoning judge, rollout judging).

Why: exact string match rejects correct paraphrases ("2850 kilometres" for "2,850 km", "the
Danube" for "Danube River") and misses leaks written differently ("2850" in a question whose
answer is "2,850 km"). Here answers are compared as typed values:
- numbers with units: number words and separators parsed ("2.1 million", "1,234.5"), units mapped
  to a canonical unit with a scale ("km" = 1000 "m"), equal within a relative tolerance;
- dates: "3 October 1990" == "1990-10-03" == "October 3, 1990";
- text: case, accents, punctuation, articles and generic type words ("river", "city", ...) ignored.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

ARTICLES = {"the", "a", "an"}
# Generic type words that names may carry or drop ("Danube River" / "the Danube").
GENERIC = {
    "river",
    "lake",
    "mount",
    "mountain",
    "mountains",
    "sea",
    "ocean",
    "island",
    "islands",
    "city",
    "town",
    "state",
    "province",
    "republic",
    "kingdom",
    "company",
    "corporation",
    "inc",
    "ltd",
    "university",
    "planet",
    "moon",
    "element",
}
HEDGES = {"about", "approximately", "around", "roughly", "nearly", "some", "circa", "ca", "c"}
SCALES = {
    "thousand": 1e3,
    "million": 1e6,
    "millions": 1e6,
    "billion": 1e9,
    "billions": 1e9,
    "trillion": 1e12,
    "k": 1e3,
    "m": None,  # ambiguous ("5 m"): metres, handled as a unit
    "bn": 1e9,
}
NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
# unit surface form -> (canonical unit, factor to it)
UNITS: dict[str, tuple[str, float]] = {}
for _canon, _factor, _names in [
    ("m", 1000.0, "km kms kilometre kilometres kilometer kilometers"),
    ("m", 1.0, "m metre metres meter meters"),
    ("m", 0.01, "cm centimetre centimetres centimeter centimeters"),
    ("m", 0.001, "mm millimetre millimetres millimeter millimeters"),
    ("m", 1609.344, "mi mile miles"),
    ("m", 0.3048, "ft foot feet"),
    (
        "m2",
        1e6,
        "km2 km² sq_km square_kilometre square_kilometres square_kilometer square_kilometers",
    ),
    ("m2", 1.0, "m2 m² square_metre square_metres square_meter square_meters"),
    ("m2", 2589988.11, "square_mile square_miles sq_mi"),
    ("kg", 1.0, "kg kilogram kilograms kilogramme kilogrammes"),
    ("kg", 0.001, "g gram grams gramme grammes"),
    ("kg", 1000.0, "t tonne tonnes ton tons"),
    ("%", 1.0, "% percent per_cent"),
    ("s", 1.0, "s sec second seconds"),
    ("s", 60.0, "min minute minutes"),
    ("s", 3600.0, "h hr hour hours"),
    ("s", 86400.0, "day days"),
    ("year", 1.0, "year years yr yrs"),
    ("usd", 1.0, "$ usd dollar dollars us_dollars"),
    ("eur", 1.0, "€ eur euro euros"),
    ("c", 1.0, "°c celsius degrees_celsius"),
]:
    for _name in _names.split():
        UNITS[_name] = (_canon, _factor)
MONTHS = {
    m: i
    for i, m in enumerate(
        "january february march april may june july august september october november december".split(),
        1,
    )
}
MONTHS.update({m[:3]: i for m, i in list(MONTHS.items())})
MONTHS["sept"] = 9
_NUMBER = re.compile(r"[-−]?\d[\d,]*(?:\.\d+)?|[-−]?\.\d+")
_NUMBER_AND_UNIT = re.compile(r"(\d[\d,]*(?:\.\d+)?)([a-z%²2]+)")  # "5km"
# where a word that starts a number begins (after the punctuation _numbers_in strips)
_NUMBER_WORD = re.compile(r"(?<!\S)[.,;:()?!\"']*[-−$€]?\d")
_WORD_AND_TWO = re.compile(r"\S+(?:\s+\S+){0,2}")  # a number's word and the two after it
RELATIVE_TOLERANCE = 1e-6  # after unit conversion; "1991" is not "1990"


@dataclass(frozen=True)
class Quantity:
    """A number with an optional canonical unit (value already scaled to that unit)."""

    value: float
    unit: str | None


@functools.lru_cache(maxsize=512)
def fold(text: str) -> str:
    """Case-folded, accent-free, NFKC text ("Zürich" -> "zurich"). Cached: the checks fold the
    same tool response once per supporting statement."""
    if text.isascii():  # nothing to normalise (most text; 30x faster than the general path)
        return text.lower()
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    return "".join(c for c in text if not unicodedata.combining(c)).casefold()


_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?%?|[^\W_]+|[%$€]")


def tokens(text: str) -> list[str]:
    """Word tokens of folded text, punctuation dropped (decimal points and % kept)."""
    return list(_tokens(text))


@functools.lru_cache(maxsize=512)
def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(fold(text).replace("’", "'").replace("'s ", " ")))


@functools.lru_cache(maxsize=512)
def normalise(text: str) -> str:
    """Canonical text form: folded tokens without articles, joined by spaces."""
    return " ".join(t for t in tokens(text) if t not in ARTICLES)


def core_words(text: str) -> list[str]:
    """Tokens without articles, hedges and generic type words (fall back to all when empty)."""
    words = [t for t in tokens(text) if t not in ARTICLES and t not in HEDGES]
    core = [t for t in words if t not in GENERIC]
    return core or words


def parse_quantity(text: str) -> Quantity | None:
    """ "2,850 km" -> Quantity(2850000, "m"); "about 9.1 million" -> Quantity(9100000, None);
    "12%" -> Quantity(12, "%"). None when the text is not one number with an optional unit."""
    words = fold(text).replace("²", "2").split()
    words = [w.strip(".,;:()") or w for w in words]
    words = [w for w in words if w not in HEDGES and w not in ARTICLES]
    if not words:
        return None
    value, rest = _leading_number(words)
    if value is None:
        return None
    if rest and SCALES.get(rest[0]):
        value *= SCALES[rest[0]]
        rest = rest[1:]
    unit = None
    if rest:
        key = "_".join(rest)
        if key in UNITS:
            unit, factor = UNITS[key]
            value *= factor
        else:
            return None
    return Quantity(value, unit)


def _leading_number(words: list[str]) -> tuple[float | None, list[str]]:
    first = words[0]
    for symbol in ("$", "€"):
        if first.startswith(symbol) and len(first) > 1:
            value, rest = _leading_number([first[1:], *words[1:]])
            return value, rest + [symbol]
    if first in NUMBER_WORDS:
        return float(NUMBER_WORDS[first]), words[1:]
    found = _NUMBER.fullmatch(first.rstrip("%"))
    if not found:
        match = _NUMBER_AND_UNIT.fullmatch(first)
        if match and (match.group(2) in UNITS or match.group(2) in SCALES):
            return _leading_number([match.group(1), match.group(2), *words[1:]])
        return None, words
    value = float(first.rstrip("%").replace(",", "").replace("−", "-"))
    rest = words[1:]
    if first.endswith("%"):
        rest = ["%", *rest]
    return value, rest


def parse_date(text: str) -> tuple[int, int | None, int | None] | None:
    """(year, month, day) of "3 October 1990", "October 3, 1990", "1990-10-03", "October 1990"."""
    t = fold(text).strip().strip(".")
    t = re.sub(r"^(on|in)\s+", "", t)
    if m := re.fullmatch(r"(\d{4})-(\d{1,2})(?:-(\d{1,2}))?", t):
        return int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None
    if m := re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)? ([a-z]+),? (\d{3,4})", t):
        if m.group(2) in MONTHS:
            return int(m.group(3)), MONTHS[m.group(2)], int(m.group(1))
    if m := re.fullmatch(r"([a-z]+)\.? (\d{1,2})(?:st|nd|rd|th)?,? (\d{3,4})", t):
        if m.group(1) in MONTHS:
            return int(m.group(3)), MONTHS[m.group(1)], int(m.group(2))
    if m := re.fullmatch(r"([a-z]+),? (\d{3,4})", t):
        if m.group(1) in MONTHS:
            return int(m.group(2)), MONTHS[m.group(1)], None
    return None


def answers_match(predicted: str, gold: str) -> bool:
    """Whether a predicted answer states the gold answer (typed comparison, see module doc)."""
    predicted, gold = str(predicted or "").strip(), str(gold or "").strip()
    if not predicted or not gold:
        return False
    gold_date, pred_date = parse_date(gold), parse_date(predicted)
    if gold_date and pred_date:
        return all(g is None or p is None or g == p for g, p in zip(gold_date, pred_date)) and (
            gold_date[0] == pred_date[0]
        )
    gold_q, pred_q = parse_quantity(gold), parse_quantity(predicted)
    if gold_q and pred_q:
        if gold_q.unit and pred_q.unit and gold_q.unit != pred_q.unit:
            return False
        return _close(gold_q.value, pred_q.value)
    if gold_q or pred_q:  # a number against a text: the number must appear in the other text
        return False
    return normalise(predicted) == normalise(gold) or core_words(predicted) == core_words(gold)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= RELATIVE_TOLERANCE * max(abs(a), abs(b), 1e-12)


def numbers_in(text: str) -> list[Quantity]:
    """Every number in a text, each with the unit written after it when one is."""
    return list(_numbers_in(text))


@functools.lru_cache(maxsize=512)  # checks scan the same tool response once per statement
def _numbers_in(text: str) -> tuple[Quantity, ...]:
    found = []
    folded = fold(text)
    for start in _NUMBER_WORD.finditer(folded):  # the words after a number may be its unit
        word, *after = _WORD_AND_TWO.match(folded, start.start()).group().split()
        w = word.strip(".,;:()?!\"'")
        for span in (3, 2, 1):
            quantity = parse_quantity(
                " ".join([w, *[x.strip(".,;:()?!") for x in after[: span - 1]]])
            )
            if quantity:
                found.append(quantity)
                break
    return tuple(found)


def answer_in_text(answer: str, text: str) -> bool:
    """Whether `text` already states `answer` (the leak check for questions and tool calls):
    its normalised words appear as a contiguous run, or its number (any format) appears."""
    if not str(answer).strip() or not text:
        return False
    quantity = parse_quantity(str(answer))
    date = parse_date(str(answer))
    if date and date[1] is not None:
        # a full date leaks when its year and its month both appear
        words = set(tokens(text))
        month_names = {m for m, i in MONTHS.items() if i == date[1]}
        if str(date[0]) in words and words & month_names:
            return True
    if quantity is not None:
        return any(
            _close(q.value, quantity.value)
            and (q.unit is None or quantity.unit is None or q.unit == quantity.unit)
            for q in numbers_in(text)
        )
    return _contains(_spaced(text, articles=False), core_words(str(answer)))


def _contains(hay: str, needle) -> bool:
    """Whether the words `needle` are a run of the words of `hay` (_spaced)."""
    return bool(needle) and f" {' '.join(needle)} " in hay


@functools.lru_cache(maxsize=512)  # a tool response is checked once per supporting statement
def _spaced(text: str, articles: bool = True) -> str:
    """The text's tokens (without articles unless `articles`) between single spaces, with one
    at each end: a run of its words is then a substring, found by one string search where a
    scan of the token list compared a slice at every position."""
    return f" {' '.join(_tokens(text)) if articles else normalise(text)} "


def name_in_text(name: str, text: str) -> bool:
    """Whether an entity name appears in a text as whole words (case and accents ignored)."""
    return _contains(_spaced(text), [t for t in tokens(name) if t not in ARTICLES])


def sentence_in_text(
    sentence: str, text: str, n: int = 5, share: float = 0.5, given: str = ""
) -> bool:
    """Whether a text copies a source sentence: at least `share` of the sentence's word n-grams
    (all of it when shorter than n words) appear in the text. N-grams already in `given` (the
    question the text answers) do not count: repeating the question is no leak."""
    words, hay = normalise(sentence).split(), _spaced(text, articles=False)
    if not words or not hay.strip():
        return False
    if len(words) <= n:
        return _contains(hay, words) and not _contains(_spaced(given, articles=False), words)
    grams = _grams(words, n) - _grams(normalise(given).split(), n)
    return bool(grams) and sum(_contains(hay, gram) for gram in grams) >= share * len(grams)


def _grams(words: list[str], n: int) -> set[tuple]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def judge_may_decide(predicted: str, gold: str) -> bool:
    """Whether an LLM judge may still accept a predicted answer that `answers_match` rejected:
    never for numbers and dates (the typed comparison is final), and for text only when the
    prediction shares a content word with the gold ("Black Sea (Europe)" for "the Black Sea";
    not "I cannot answer that")."""
    if parse_quantity(str(gold)) or parse_date(str(gold)):
        return False
    return bool(set(core_words(str(gold))) & set(tokens(str(predicted))))
