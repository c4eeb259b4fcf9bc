"""Open-world memory: documents -> entity-anchored statements -> entity records across sources.

A statement is one claim of one sentence, anchored on an entity (record shape in
notes/SYNTH-INTERFACES.md): {"entity": key, "entity_name", "relation": open name, "value": {"type":
entity|number|date|text, "text", "number", "unit", "entity"}, "time", "source", "span",
"sentence", "extractor"}. Relations are open (whatever the text says: "capital", "lies on",
"was founded in"), values typed, so later stages can compute, compare and walk links.

Two extractors behind the StageMethod interface (data_synthesis/stage_api.py):
- `LLMExtractor` (the method): the model reads each chunk of a document and lists its
  statements (schema-constrained JSON); each is grounded - its sentence must be in the document
  and its value in its sentence - and typed by data_synthesis.answers' parsers.
- `HeuristicExtractor` (the baseline, CPU default): generic sentence-level subject / verb group /
  object extraction for any English text, with lemminflect for verb forms: no patterns tied to a
  corpus's phrasing. "The capital of France is Paris" and "Paris is the capital of France" both
  give (France, capital, Paris).

Entity names are normalised (`entity_key`: case, accents, articles, possessives, disambiguation
suffixes) and `build_records` merges statements of the same key from all documents into one
record, also merging names that differ only by a generic type word ("Danube River" / "the
Danube"); `RecordBuilder` does it for statements streamed in (a reduce task's partition),
holding a bounded sample of a hub entity's; `value_index` is the reverse index (relation,
value) -> entities that obfuscated questions use to prove a description picks out one entity.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import tempfile
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from data_synthesis.answers import (
    ARTICLES,
    GENERIC,
    HEDGES,
    fold,
    normalise,
    parse_date,
    parse_quantity,
)
from data_synthesis.answers import answer_in_text as value_in_text
from data_synthesis.answers import tokens as folded_words
from data_synthesis.engine.io import stable_hash
from data_synthesis.engine.sort import DistinctRows
from data_synthesis.llm.json_task import STRING, load_prompt, object_schema, require, run_json_task

STAGE = "extract"  # the engine's name of the memory map stage
CHUNK_CHARS = 1500
MAX_SENTENCE_CHARS = 400

# --- entity keys ------------------------------------------------------------------------------


@lru_cache(maxsize=1 << 16)
def _lemmas(word: str) -> dict[str, tuple[str, ...]]:
    """lemminflect's lemmas of `word` by part of speech ({"VERB": ("lie",), ...}), cached and
    not to be changed: lemminflect deep-copies every answer, which made its look-ups (and
    _inflection's) half of the baseline's extraction time."""
    from lemminflect import getAllLemmas

    return getAllLemmas(word)


@lru_cache(maxsize=1 << 16)
def _inflection(lemma: str, tag: str) -> tuple[str, ...]:
    """lemminflect's forms of `lemma` for a Penn tag ("VBD": ("lay",)), cached likewise."""
    from lemminflect import getInflection

    return getInflection(lemma, tag)


def entity_key(name: str) -> str:
    """The normalised key of an entity name: "The Danube" / "danube" -> "danube";
    "Amazon (river)" -> "amazon"; "France's" -> "france"."""
    name = re.sub(r"\s*\([^)]*\)\s*$", "", name.strip())
    name = re.sub(r"['’]s$", "", name)
    words = normalise(name).split()
    return " ".join(words)


def alias_key(key: str) -> str:
    """A key without generic type words, for merging "danube river" into "danube"."""
    words = [w for w in key.split() if w not in GENERIC]
    return " ".join(words) if words else key


# What a thing can be, in groups of the words that say so: two keys of one alias key name one
# entity unless their kinds fall in no common group ("kenya", a country, and "mount kenya")
KINDS = [
    {"river", "stream", "tributary"},
    {"lake", "reservoir", "lagoon"},
    {"mount", "mountain", "mountains", "volcano", "peak", "range", "massif"},
    {"sea", "gulf", "bay"},
    {"ocean"},
    {"island", "islands", "archipelago", "atoll"},
    {"city", "town", "capital", "municipality", "village", "port", "metropolis"},
    {"state", "province", "republic", "kingdom", "country", "nation", "region", "territory"},
    {"company", "corporation", "inc", "ltd", "firm", "manufacturer", "maker", "business"},
    {"university", "college", "school", "institute"},
    {"planet", "world"},
    {"moon", "satellite"},
    {"element", "metal", "metalloid", "gas"},
]
_KIND_OF = {word: frozenset(group) for group in KINDS for word in group}


def kinds(key: str, said: set[str]) -> set[str]:
    """What a key is said to be ("is a" nouns, `said`) and its generic words name, each word
    widened to its group in KINDS: "mount kenya" -> the mountain group."""
    words = said | {w for w in key.split() if w in GENERIC}
    return set().union(*(_KIND_OF.get(w, {w}) for w in words))


def one_entity(a: set[str], b: set[str]) -> bool:
    """Whether two keys of one alias key, of kinds `a` and `b`, name one entity: unless both
    kinds are known and share nothing. Until 2026-12-05 every such pair merged, and 5 of the
    bundled corpus's 11 did wrongly: Kenya / Mount Kenya, Mexico / Mexico City, Geneva / Lake
    Geneva, Uppsala / Uppsala University, William Shakespeare / William Shakespeare Company
    (the fourth still does: "Uppsala" is said to be nothing)."""
    return not a or not b or bool(a & b)


# --- sentences --------------------------------------------------------------------------------

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
# A blank line: a sentence never runs on across it (a heading, a list, a hard-wrapped paragraph
# ending without a full stop), though it runs on across one line break (hard-wrapped text).
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
_ABBREV = re.compile(r"(?:\b[A-Z]\.|\b(?:Mr|Mrs|Dr|St|Mt|No|vs|etc|e\.g|i\.e|Inc|Ltd|Jr|Sr)\.)$")


_LEADING_MARKS = re.compile(r"[^\S\n]*(?:>[^\S\n]*)*[`*_\[(\"']*")


def _starts_lower(text: str, start: int) -> bool:
    """Whether the text at `start` goes on a sentence: it starts in lower case, maybe after a
    mark ("`pyproject.toml` projects", "[docs](...)") or a quote's "> " (a hard-wrapped
    blockquote: "Chardet used our 477-file\\n> corpus when ...")."""
    at = _LEADING_MARKS.match(text, start).end()
    return at < len(text) and text[at].islower()


# words that open a sentence and never go on a name: after "C." a new sentence starts ("This
# module is written in C. You need a C compiler"), where "John F. Kennedy" goes on
_SENTENCE_OPENERS = ARTICLES | {"you", "we", "i", "it", "this", "these", "there", "they"}


def _starts_sentence(text: str, start: int) -> bool:
    word = re.match(r"\s*(\w+)", text[start : start + 40])
    return bool(word) and word.group(1).lower() in _SENTENCE_OPENERS


# A line that cannot end a sentence: it ends in a comma, a conjunction, a preposition or an
# article ("It serializes dataclass, datetime, numpy, and\\n[UUID](...) instances natively.")
_RUNS_ON = re.compile(
    r"(?:,|\b(?:and|or|but|nor|of|the|a|an|to|with|for|in|on|by|from|than))\n\Z", re.I
)
# A hard-wrapped line: 60 characters or more and no full stop, colon or mark at its end (a
# paragraph's line; a heading, a label or a short list line is shorter)
_WRAPPED = re.compile(r"^[^\n]{59,}[\w,;)'\"`]\n\Z", re.M)
# a line that starts an item of its own: a bullet, a numbered item, a heading, a table row
_ITEM_START = re.compile(r"[^\S\n]*(?:[-*+•]|\d+[.)]|#+|\|)\s")


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of a text (abbreviations kept whole)."""
    spans: list[list[int]] = []
    for m in _SENTENCE.finditer(text):
        start, end = m.start(), m.end()
        if (
            spans
            and not _PARAGRAPH_BREAK.search(text, spans[-1][1] - 1, start)
            and (
                _ABBREV.search(text[spans[-1][0] : spans[-1][1]])
                and not _starts_sentence(text, start)
                or _starts_lower(text, start)
                or (
                    _RUNS_ON.search(text, spans[-1][0], spans[-1][1])
                    or _WRAPPED.search(text, spans[-1][0], spans[-1][1])
                )
                and not _ITEM_START.match(text, start)
                or re.search(r"\d\.$", text[spans[-1][0] : spans[-1][1]])
                and text[start : start + 1].isdigit()
            )
        ):
            spans[-1][1] = end
        else:
            spans.append([start, end])
    out = []
    for start, end in spans:
        chunk = text[start:end]
        lead = len(chunk) - len(chunk.lstrip())
        trail = len(chunk.rstrip())
        if trail > lead:
            out.append((start + lead, start + trail))
    return out


# --- heuristic baseline: generic subject / verb group / object ---------------------------------

AUX = {
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "has",
    "have",
    "had",
    "can",
    "could",
    "will",
    "would",
    "may",
    "might",
    "must",
    "shall",
    "should",
    "does",
    "do",
    "did",
}
PREPS = {
    "in",
    "on",
    "at",
    "into",
    "from",
    "by",
    "for",
    "with",
    "of",
    "to",
    "as",
    "about",
    "over",
    "under",
    "through",
    "between",
    "after",
    "before",
    "near",
    "since",
    "during",
    "across",
    "along",
    "onto",
    "upon",
    "within",
    "without",
    "against",
    "toward",
    "towards",
    "via",
}
ADVERBS = {
    "also",
    "otherwise",
    "first",
    "later",
    "still",
    "often",
    "usually",
    "now",
    "then",
    "originally",
    "officially",
    "currently",
    "mainly",
    "largely",
    "widely",
    "commonly",
    "generally",
    "not",
    "never",
    "always",
    "already",
    "once",
    "formerly",
    "primarily",
    "typically",
    "only",
}
PARTICLES = {"up", "out", "off", "down", "away", "back"}
MODALS = {"can", "could", "will", "would", "may", "might", "must", "shall", "should"}
# a question's words that no search looks for: the baseline planner's and agent's queries
# ("What may Len be used with?" searched for "may used")
QUERY_STOP = (
    set(
        "a an the of in on at to for by with from into about and or than then as is are was were "
        "be been has have had do does did what which who whom whose when where why how many much "
        "this that these those it its there their his her they he she one entity name called known "
        "also lie lies between".split()
    )
    | MODALS
)
SUBORDINATORS = {
    "until",
    "unless",
    "since",
    "once",
    "whether",
    "both",
    "either",
    "neither",
    "also",
    "however",
    "thus",
    "therefore",
    "please",
    "do",
    "don't",
    "let",
    "note",
}
INNER_STOP = {
    "if",
    "you",
    "we",
    "i",
    "he",
    "she",
    "they",
    "that",
    "which",
    "who",
    "when",
    "whether",
    "because",
    "your",
}
ORDINALS = {"first", "second", "third", "last", "only", "next", "same", "other", "main"}
DEICTIC = {
    "this",
    "these",
    "that",
    "those",
    "its",
    "his",
    "her",
    "their",
    "such",
    "it",
    "them",
    "him",
    "us",
    "me",
    "you",
}
# a verb group with one of these denies its statement ("does not require", "never freezes"):
# no statement is made of it (until 2026-12-05 the word was skipped as an adverb, and
# "Its normal route does not require technical climbing" gave (.., does require, ..))
NEGATIONS = {"not", "never"}
_DENIED = re.compile(r"n['’]t$")  # "isn't", "doesn't": one token
OBJECT_PRONOUNS = {"it", "him", "her", "them", "this", "that", "these", "those", "us", "me"}
# subjects that stand for the document's topic; not "This" / "These", which point to what the
# sentence before said ("This is bad class design"), rarely to the topic; nor "They", plural
# where a topic is one ("Together, they run on ...": NumPy and SciPy)
PRONOUNS = {"it", "he", "she", "its"}
BAD_SUBJECT_START = {
    "there",
    "others",
    "here",
    "what",
    "which",
    "who",
    "when",
    "where",
    "how",
    "why",
    "if",
    "because",
    "although",
    "while",
    "as",
    "but",
    "and",
    "or",
    "so",
    "yet",
    "we",
    "you",
    "i",
    "they",
    "one",
    "each",
    "all",
    "some",
    "many",
    "most",
    "more",
    "much",
    "several",
    "few",
    "both",
    "any",
    "every",
    "another",
    "various",
    "other",
    "plus",
    "such",
    "that",
    "those",
    "see",
    "note",
    "for",
    "to",
    "everything",
    "nothing",
    "something",
    "anything",
    "anyone",
    "everyone",
    "someone",
    "nobody",
    "none",
}
ADJECTIVE_NOUNS = {
    "long": "length",
    "high": "height",
    "tall": "height",
    "wide": "width",
    "deep": "depth",
    "old": "age",
    "large": "size",
    "heavy": "weight",
}
_WORD = re.compile(r"[\w][\w'’.,&/-]*[\w%]|[\w%$€]|\S")


@lru_cache(maxsize=100_000)
def _verb_lemma(word: str) -> str | None:
    """The verb lemma of a finite verb form (3rd person present or past), else None."""
    lower = word.lower()
    if lower in AUX:
        return _lemmas(lower).get("AUX", (lower,))[0]
    if not word.islower() or len(word) < 3:
        return None
    lemmas = _lemmas(lower)
    if "VERB" not in lemmas:
        return None
    lemma = lemmas["VERB"][0]
    if (
        lower == lemma + "s"
        or lower == lemma + "es"
        or lower.endswith("ies")
        and lemma.endswith("y")
    ):
        return lemma
    if lower in _inflection(lemma, "VBD") or lower in _inflection(lemma, "VBN"):
        return lemma
    return None


def _noun_before_verb(tokens: list, i: int) -> bool:
    """A -s/-ed word that can be a noun, followed by a verb, or any word followed by a modal: the
    noun ends the subject."""
    word = tokens[i].group(0).lower()
    if word in AUX or i + 1 >= len(tokens):
        return False
    if tokens[i - 1].group(0).lower().endswith("ly") and _adverb(tokens[i - 1].group(0).lower()):
        return False  # "The codebase efficiently trains models": after an adverb, a verb
    nxt = i + 1
    while nxt < len(tokens) - 1 and tokens[nxt].group(0).lower() in ADVERBS:
        nxt += 1
    following = tokens[nxt].group(0)
    if following.lower() in MODALS:
        return True  # "HTML templates can use ...": no verb is followed by a modal (and the
        # lexicon knows "templates" only as a verb)
    if "NOUN" not in _lemmas(word):
        return False
    after = tokens[nxt + 1].group(0) if nxt + 1 < len(tokens) else ""
    if (
        _plural(word)
        and _base_verb(following)
        and (_only(following, "VERB") or after in ARTICLES and following not in PREPS | PARTICLES)
    ):
        return _lemmas(word)["VERB"][0] not in _CATENATIVE  # "Hash values differ", "Major
        # issues include", "filter blocks take a Document": a plural noun and its verb; not
        # "It helps prevent ..."
    if "ADJ" in _lemmas(following) and after.islower() and _attributive(after):
        return False  # "tokenizers ships dedicated wheels": the past form is its object's
    return _verb_lemma(following) is not None


# verbs followed by another verb's base form ("helps prevent", "lets you"), not by their object
_CATENATIVE = {"help", "let", "make", "see", "hear", "dare"}


def _attributive(word: str) -> bool:
    """A noun an adjective or a participle before it modifies (not a preposition, article, or
    auxiliary: "files used by", "the wheels shipped in")."""
    return "NOUN" in _lemmas(word) and word not in PREPS | ARTICLES | AUX


def _plural_verb(tokens: list, i: int) -> bool:
    """A base-form verb after a plural subject of names ("Avignon and Arles lie on ..."), after
    an article and a plural noun ("The attacks use ...") or after bare plurals ("Readers and
    writers support ...")."""
    word = tokens[i].group(0)
    before = [t.group(0) for t in tokens[:i]]
    while len(before) > 1 and before[-1].lower() in ADVERBS:
        before.pop()  # "Avignon and Arles also lie on ..."
    if not _base_verb(word):
        return False
    if len(before) == 2 and before[0].lower() in ARTICLES and _plural(before[1]):
        return True
    words = [w.lower() for w in before]
    if (
        all(_plural(w) or w in ("and", "or") for w in words)
        and _plural(words[-1])
        and word not in PREPS
        and "ADJ" not in _lemmas(word)
    ):
        return True  # a bare plural subject: "Readers and writers support ..." (not "Bindings
        # over the Rust implementation", "`tasks` total number of tasks")
    return "and" in before and before[0][:1].isupper() and before[-1][:1].isupper()


def _plural(word: str) -> bool:
    """A plural noun: "attacks", "files" (not "news", "series")."""
    nouns = _lemmas(word).get("NOUN", ())
    return word.islower() and word.endswith("s") and bool(nouns) and nouns[0] != word


# possessive determiners: the word after one is owned, a noun
OWNERS = {"its", "his", "her", "their", "our", "my", "your"}


def _after_owned(tokens: list, i: int) -> bool:
    """A base-form verb after an owned plural ("His works include ...", "Its waters flow ...")."""
    word = tokens[i].group(0)
    return (
        i >= 2
        and tokens[i - 2].group(0).lower() in OWNERS
        and tokens[i - 1].group(0).endswith("s")
        and word.islower()
        and _lemmas(word).get("VERB", ("",))[0] == word
    )


def _after_article(tokens: list, i: int) -> bool:
    """Whether tokens[i] follows an article, directly or past up to three adjectives, adverbs or
    participles that are no nouns ("the latest", "a more", "the weak scaled"): a noun's place
    or its modifier's, never a verb's ("Pliny the Younger wrote": a name ends the phrase)."""
    for j in range(i - 1, max(i - 5, -1), -1):
        word = tokens[j].group(0)
        if word.lower() in ARTICLES:
            return True
        if word in ("more", "most", "less", "least", "very"):
            continue  # "a more formalized way" ("more" can be a noun)
        kinds = _lemmas(word)
        if not word.islower() or "NOUN" in kinds or not {"ADJ", "ADV", "VERB"} & set(kinds):
            return False
        if "VERB" in kinds and not ({"ADJ", "ADV"} & set(kinds) or _is_participle(word)):
            return False  # a verb of its own: "a tool that runs"
    return False


def _unfinished(tokens: list) -> bool:
    """A line with no full stop, question or exclamation mark at its end: a list item's or a
    heading's, whose words may be a noun phrase ("FP8 mixed precision with ...")."""
    return tokens[-1].group(0) not in (".", "!", "?")


def _compound_adjective(tokens: list, i: int) -> bool:
    """A past form that is also an adjective, before a bare noun that ends the phrase, in a
    line with no full stop (a list item's or a heading's): it modifies the noun ("FP8 mixed
    precision with ...", where "Hawking studied physics at Oxford." has its verb). "based"
    anywhere, unless a preposition ("based on") or its object's determiner ("Gounod based the
    opera on ...") follows: "BSD based distributions", "a Rust based linter"."""
    word = tokens[i].group(0).lower()
    following = tokens[i + 1].group(0) if i + 1 < len(tokens) else ""
    after = tokens[i + 2].group(0).lower() if i + 2 < len(tokens) else ""
    if word == "based":  # "BSD based distributions"
        return following.lower() not in PREPS | _DETERMINERS | OWNERS
    return (
        "ADJ" in _lemmas(word)
        and _is_participle(word)
        and following.islower()
        and _attributive(following)
        and not _plural(following)
        and (not after[:1].isalnum() or after in PREPS)
        and _unfinished(tokens)
    )


def _noun_before_preposition(tokens: list, i: int) -> bool:
    """A noun whose past tense is spelled as its base ("output", "input", "set", "cost"), right
    before a preposition: the subject's head noun ("CLI JSON output with --alt now uses ...",
    "Pretty-print output with an indent"), where a verb of that form has its object first
    ("The program output the result to ...")."""
    word = tokens[i].group(0).lower()
    following = tokens[i + 1].group(0).lower() if i + 1 < len(tokens) else ""
    return (
        following in PREPS
        and "NOUN" in _lemmas(word)
        and _lemmas(word).get("VERB", ("",))[0] == word
        and word in _inflection(word, "VBD")
    )


def _reduced_relative(tokens: list, i: int) -> bool:
    """A past participle right before a form of "be": it modifies the subject ("The oldest
    distributed version supported is ...", "Files used are ...")."""
    following = tokens[i + 1].group(0).lower() if i + 1 < len(tokens) else ""
    word = tokens[i].group(0).lower()
    return following in ("is", "are", "was", "were") and word not in AUX and _is_participle(word)


def _unnamed(word: str, reading: _Reading) -> bool:
    """A word the text never writes as a name (mid-sentence, capitalised) and not the topic's."""
    return word not in reading.names and not _in_topic(word, reading)


def _in_topic(word: str, reading: _Reading) -> bool:
    """A word of the topic's name, in any case."""
    return word.lower() in (reading.topic or "").lower().split()


# what a document's "This X" or "The X" names when X says what the document is about ("This
# library supports ...", "The codebase trains ..."; not "This option", "The limit")
_DOCUMENT_KINDS = {
    "repository",
    "codebase",
    "library",
    "package",
    "project",
    "module",
    "plugin",
    "tool",
    "toolkit",
    "framework",
    "program",
    "application",
    "software",
    "document",
    "article",
    "guide",
}


def _names_topic(noun: str, reading: _Reading) -> bool:
    """Whether "The <noun>" or "This <noun>" stands for the topic: the noun is a word of the
    title, what the text calls its topic ("Everest is a mountain in ..." ... "This mountain"),
    a kind of document ("This library") or its name; not "The limit", "This option"."""
    return noun in reading.kinds | _DOCUMENT_KINDS | {"name"} or _in_topic(noun, reading)


# what a work is called besides what it is said to be ("Oliver Twist is a work by ..." ...
# "The novel follows ...")
_WORKS = {"work", "novel", "book", "play", "poem", "story", "opera", "ballet", "film", "song"}


def _topic_key(name: str) -> str:
    """A name's key up to its first comma ("Washington, D.C." is "Washington" cut at it)."""
    return alias_key(entity_key(name.split(", ")[0]))


def _kinds_said(relation: str, value: str) -> set[str]:
    """The nouns a statement of the topic calls it ("is a" + "river", "is the capital of"),
    each with its group of KINDS (a capital is a city) or the works."""
    said = re.fullmatch(r"is (?:a|an|the) ([a-z-]+) of", relation)
    noun = value.split()[-1].lower() if relation == "is a" else said and said.group(1)
    if not noun:
        return set()
    return _KIND_OF.get(noun, {noun}) | (_WORKS if noun in _WORKS else set())


def _headline_subject(words: list[str], reading: _Reading) -> bool:
    """A subject of common words, no determiner and no name: a capitalised English noun or
    adjective the text never writes as a name, then lower-case words ending with a noun
    ("Performance", "Wheels"): a headline's or a changelog's, whose bare past form is a
    participle ("Performance measured on 1GB of text", "Wheels published to PyPI"), not a
    past tense ("Einstein moved to Berlin", "Twelve astronauts walked on the Moon", "Mark
    Twain worked as", "Earthquakes and stone robbers destroyed")."""
    first, rest = words[0], words[1:]
    return (
        first[:1].isupper()
        and _unnamed(first, reading)
        and bool({"NOUN", "ADJ"} & set(_lemmas(first.lower())))
        and all(w.islower() for w in rest)
        and not {w.lower() for w in words} & (_DETERMINERS | OWNERS | {"and", "or"})
        and "NOUN" in _lemmas(words[-1].lower())
    )


def _third_person(verb: str) -> str:
    """A base-form verb as relations are written, in the third person ("lie" -> "lies")."""
    return (_inflection(verb, "VBZ") or (verb,))[0]


def _adverb(word: str) -> bool:
    return word in ADVERBS or "ADV" in _lemmas(word)


def _base_verb(word: str) -> bool:
    return word.islower() and _lemmas(word).get("VERB", ("",))[0] == word


def _only(word: str, kind: str) -> bool:
    """A word of one kind and nothing else: a verb ("encode", "added", "located", not "use"),
    an adverb ("exactly")."""
    return set(_lemmas(word)) == {kind}


def _participle_only(word: str) -> bool:
    """A past participle that is no past tense or base form ("done", "written"; not "built",
    "based", "run"): with no auxiliary before it, a headline's or a reduced clause's, no finite
    verb ("Markdown parser done right", "EPFL, known as ...")."""
    if not _is_participle(word):
        return False
    lower = word.lower()
    lemma = _lemmas(lower)["VERB"][0]
    return lower != lemma and lower not in _inflection(lemma, "VBD")  # not "run", "built"


def _noun_taken_for_verb(tokens: list, verb_at: int, reading: _Reading) -> bool:
    """Whether the -s word taken for the verb is a plural noun: it can be one, no object of its
    own follows it (a preposition, an adverb, a participle, nothing), and
    - the sentence is an instruction: it opens with a base-form verb that is no name and not
      the topic ("Pass strings to ...", "Express inclusive and/or exclusive bounds on ...");
    - or it is a bold term's gloss ("**dedup** blocks for deduplication");
    - or the subject is bare and the text writes the word after a determiner ("Table
      Mountain, about 1,085 metres high, rises ...": "8,611 metres"; "an object");
    - or a line with no full stop has it before a preposition and a gerund ("Python scripts
      for loading and parsing ...").
    "Search returns the top-k passages", "Ruff supports over 900 rules" and "**Ruff** supports
    Python 3.7" keep their verbs."""
    first, word = tokens[0].group(0), tokens[verb_at].group(0)
    if not word.endswith("s") or "NOUN" not in _lemmas(word):
        return False
    instruction = (
        first[:1].isupper()
        and _base_verb(first.lower())
        and (
            verb_at == 1
            or tokens[1].group(0)[:1].islower()  # not "Mount Kilimanjaro"
            or any(  # "Use W&B to build better models faster"
                t.group(0) == "to" and _base_verb(n.group(0))
                for t, n in zip(tokens[1:verb_at], tokens[2:verb_at])
            )
        )
        and _unnamed(first, reading)  # "Ruff supports over ...", "Shanghai lies on ..."
    )
    singular = _lemmas(word)["NOUN"][0]
    named_noun = (word in reading.nouns or f"a {singular}" in reading.nouns) and not any(
        t.group(0).lower() in _DETERMINERS | OWNERS for t in tokens[:verb_at]
    )  # "Python wheels for ...", the text saying "the wheels" or "a wheel": a bare subject's noun
    # "Convenience functions for quick access:" (not "HTTPX builds on ... and gives you:")
    label = tokens[-1].group(0) == ":" and _unnamed(first, reading)
    gerund = any(  # "a test client for simulating HTTP requests during testing": its object
        t.group(0).endswith("ing") and "VERB" in _lemmas(t.group(0).lower())
        for t in tokens[1:verb_at]
    )
    later = [t.group(0).lower() for t in tokens[verb_at + 1 :]]
    plural_passive = (
        any(  # "Python wheels for NVIDIA's Jetson Nano, ... are provided": its verb
            a in ("are", "were") and _is_participle(b) for a, b in zip(later, later[1:])
        )
        and not {"which", "that", "who"} & set(later)
    )
    # "Python scripts for loading and parsing ...": a list item's noun and what it is for (not
    # "X stands for making ...", whose sentence ends with a full stop)
    purpose = (
        _unfinished(tokens)
        and verb_at + 2 < len(tokens)
        and tokens[verb_at + 1].group(0).lower() in PREPS
        and tokens[verb_at + 2].group(0).lower().endswith("ing")
    )
    if not (
        reading.glossed or instruction or named_noun or label or gerund or plural_passive or purpose
    ):
        return False
    after = tokens[verb_at + 1].group(0) if verb_at + 1 < len(tokens) else ""
    lower = after.lower()
    if lower in ("more", "most", "less", "fewer"):
        return False  # "Carbon forms more compounds": its object's determiner
    return not after[:1].isalnum() or lower in PREPS or _adverb(lower) or lower.endswith("ing")


def _passive_before(participle: str, following: str) -> bool:
    """A past form with no auxiliary that can only be a passive before `following`:
    "maintained by", "based on" (nothing is based on without an object)."""
    return following == "by" or (participle.lower(), following) == ("based", "on")


def _is_participle(word: str) -> bool:
    lemmas = _lemmas(word.lower()).get("VERB")
    return bool(lemmas) and word.lower() in _inflection(lemmas[0], "VBN")


def _expletive(subject: str, after: list) -> bool:
    """ "It is possible to ...", "It is important that ...": an "it" that stands for the clause
    after it, not for the topic (`after`: up to five tokens after the verb)."""
    words = [token.group(0).lower() for token in after] + ["", "", "", ""]
    if subject.lower() == "it" and words[:2] == ["up", "to"]:
        return True  # "It is up to the developer to choose ..."
    if subject.lower() != "it" or "ADJ" not in _lemmas(words[0]):
        return False
    # "that", or "to" and a verb with an object of its own ("It is easy to use (with pip)" says
    # what the topic is; "It is home to ..." has no verb)
    if words[1] == "to" and words[2] in ("first", "always", "only", "also", "never"):
        words = [*words[:2], *words[3:], ""]  # "It is best to first set all parameters"
    return words[1] == "that" or (
        words[1] == "to"
        and _base_verb(words[2])
        and bool(re.match(r"\w", words[3]))
        and words[3] not in PREPS
    )


def _ends_phrase(word: str) -> bool:
    """Whether the word after a participle shows it opens a phrase of its own: a preposition, a
    hedge or a number ("written by", "written around 1600"), or nothing."""
    return word in PREPS or word in HEDGES or not word.isalpha()


def _clean(text: str) -> str:
    return text.strip().strip(",;:").strip()


# "Berlin, Hamburg and Munich": capitalised names, not a title's words cut at a lower-case one
# ("The Sun Also Rises, A Farewell| to Arms": the last name's words taken whole, then refused)
_NAME_LIST = re.compile(
    r"((?:[A-Z][\w.-]*(?:\s+[A-Z][\w.-]*)*,\s+)+(?:and\s+)?(?>[A-Z][\w.-]*(?:\s+[A-Z][\w.-]*)*))"
    r"(?!\s+(?!and\b|or\b)[a-z]+\s+[A-Z])"
)


# Where an object phrase ends: a comma, a colon (not a url's), a parenthesis, a dash, a new clause
_BOUNDARY = re.compile(
    r",(?!\d)|;|:(?!//)|\s\((?!\d)|\s-\s|\s—\s"
    r"|\b(?:which|who|whom|whose|while|whereas|but|because|although|where|when)\b"
    r"|\band\s+(?=(?:then|can|could|may|might|must|should|would)\b)"  # "and then inserts"
)
# an article and a run of comma-separated words: "a fast, expressive" (in "a fast, expressive,
# extensible templating engine"), "a simple, yet elegant"
_ADJECTIVE_RUN = re.compile(r"\b(?:an?|the)\s+((?:[\w-]+,\s+(?:yet\s+|and\s+)?)*[\w-]+)$", re.I)


def _first_clause(rest: str) -> str:
    """`rest` up to its first boundary; a comma between adjectives is none ("Jinja is a fast,
    expressive, extensible templating engine": its value is not "a fast")."""
    for boundary in _BOUNDARY.finditer(rest):
        head = rest[: boundary.start()]
        run = _ADJECTIVE_RUN.search(head) if boundary.group(0) == "," else None
        after = run and re.match(r"\s*(?:(?:yet|and)\s+)?([\w-]+)", rest[boundary.end() :])
        if not after:
            return head
        words = re.split(r",\s+(?:yet\s+|and\s+)?", run[1])
        if not all(map(_adjective, words)) or not (len(words) > 1 or _adjective(after[1])):
            return head  # "a simple, yet elegant, HTTP library": a run of two goes on to a noun
    return rest


def _adjective(word: str) -> bool:
    """A lower-case adjective by the lexicon, or an unknown word shaped like one ("extensible",
    "framework-agnostic")."""
    if not word.islower():
        return False  # "the Ill, close to ..." is a name
    lemmas = _lemmas(word)
    if lemmas:
        return "ADJ" in lemmas
    return bool(re.search(r"(?:ive|ible|able|ful|ic|ous)$|\w-\w", word))


def value_phrase(rest: str) -> tuple[str, str | None]:
    """The object phrase of a clause (up to a clause boundary) and a time qualifier in the rest."""
    time = None
    t = re.search(
        r"\b(?:in|on|since|until|by|as of|during)\s+((?:\d{1,2}\s+)?(?:[A-Z][a-z]+\s+)?\d{3,4}s?)\b",
        rest,
    )
    if t:
        time = t.group(1)
    lst = _NAME_LIST.match(rest)
    if lst:
        return lst.group(1), time
    cut = _first_clause(rest)
    cut = re.split(
        r"\s+and\s+(?=(?:[a-z]+\s+)?(?:is|are|was|were|has|have|had)\b)", cut, maxsplit=1
    )[0]
    cut = _clean(cut.rstrip(".!?"))
    # "1998 by Larry Page in Menlo Park" -> "1998"; "Warsaw in 1867" -> "Warsaw"
    head = re.match(r"^(.+?)\s+(?:in|on|at|by|from|since|during|with|for|after|before)\s", cut)
    if head and typed_value(head.group(1))["type"] in ("entity", "number", "date"):
        cut = head.group(1)
    return cut, time


def typed_value(text: str) -> dict:
    """A value record from its text: a date, a number with its unit, an entity name, or text."""
    text = _clean(text)
    bare_number = re.sub(r"^(?:about|approximately|around|roughly|nearly|over|some)\s+", "", text)
    date = parse_date(text)
    if (
        date
        or re.fullmatch(r"(?:in |since )?\d{3,4}(?: BC| AD)?", text)
        and not re.search(r"\d,\d", text)
    ):
        year = re.search(r"\d{3,4}", text).group(0)
        if date or 1000 <= int(year) <= 2100 or re.search(r"\b(?:BC|AD)$", text):
            return {
                "type": "date",
                "text": text,
                "number": float(date[0] if date else year),
                "unit": "year",
                "entity": None,
            }
    words = bare_number.split()
    for n in range(min(len(words), 5), 0, -1):
        quantity = parse_quantity(" ".join(words[:n]))
        if quantity is not None and re.search(r"\d", " ".join(words[:n])):
            unit = " ".join(
                w for w in words[1:n] if not re.match(r"(?i)thousand|million|billion", w)
            )
            unit = unit or None
            return {
                "type": "number",
                "text": text,
                "number": _raw_number(words[:n]),
                "unit": unit,
                "entity": None,
            }
    bare = re.sub(r"^(?:the|a|an)\s+", "", text, flags=re.IGNORECASE)
    if (
        bare[:1].isupper()
        and len(bare.split()) <= 8
        and not re.search(r"\b[a-z]{4,}\b.*\b[a-z]{4,}\b.*\b[a-z]{4,}\b", bare)
    ):
        return {
            "type": "entity",
            "text": text,
            "number": None,
            "unit": None,
            "entity": entity_key(bare),
        }
    return {"type": "text", "text": text, "number": None, "unit": None, "entity": None}


def _raw_number(words: list[str]) -> float | None:
    """The number as written with its scale word ("68 million" -> 68e6), without unit factors."""
    scale = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
    value = None
    for word in words:
        w = word.strip(".,").replace(",", "")
        if value is None and re.fullmatch(r"-?\d+(?:\.\d+)?", w):
            value = float(w)
        elif value is not None and w.lower() in scale:
            value *= scale[w.lower()]
    return value


def _statement(entity, relation, value_text, sentence, span, doc, time, extractor, name=None):
    value = typed_value(value_text)
    # a value of punctuation alone (")" after a cut parenthesis) can be no answer
    if not relation or not re.search(r"\w", value["text"]) or len(value["text"]) > 200:
        return None
    return {
        "entity": entity_key(name or entity),
        "entity_name": re.sub(
            r"^(The|A|An|Some|Many|Most|Several|All|Each|Every)\s+",
            lambda m: m.group(1).lower() + " ",
            _clean(name or entity),
        ),
        "relation": relation,
        "value": value,
        "time": time if time and value["type"] != "date" else None,
        "source": doc["id"],
        "span": list(span),
        "sentence": sentence,
        "extractor": extractor,
    }


# Markdown (READMEs, docs, wikis exported as markdown): a clause is read from the sentence's
# text without its inline marks, so a value is "a Runner", not "a [Runner](https"; the
# statement keeps the sentence as written (its span). Code blocks and table rows hold no prose.
_HTML_TAGS = (
    "a|abbr|b|big|blockquote|br|center|code|dd|del|details|div|dl|dt|em|font|h[1-6]|hr|i|img|"
    "ins|kbd|li|ol|p|picture|pre|s|small|source|span|strong|sub|summary|sup|table|tbody|td|th|"
    "thead|tr|tt|u|ul"
)
_TARGET = r"\((?:[^()\s]|\([^()\s]*\))*\)"  # a link's url, with a pair inside: "pypi%20(stable)"
_INLINE_MARKS = (
    # HTML tags (READMEs' badges, headers, tables), by name: not an autolink ("<https://x.org>")
    # nor a type's parameter ("List<String>")
    (re.compile(rf"</?(?:{_HTML_TAGS})(?:\s[^<>\n]*)?/?>", re.I), " "),
    (re.compile(rf"!\[[^\]]*\]{_TARGET}"), ""),  # images (badges)
    (re.compile(rf"\[([^\]]*)\]{_TARGET}"), r"\1"),  # links: their text (a badge's: none)
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # italics
    (re.compile(r"(?<!\w)_(?=\S)([^_\n]+?)(?<=\S)_(?!\w)"), r"\1"),  # _italics_, not snake_case
    (re.compile(r"`+([^`]+?)`+"), r"\1"),  # inline code
    (re.compile(r"\n[^\S\n]*(?:>[^\S\n]*)+"), "\n"),  # a quote's "> " on its next lines
)  # (headings never get here: they are no prose, _NOT_PROSE)
_ANY_MARK = re.compile(r"[<\[*_`]|\n[^\S\n]*>")  # what every pattern of _INLINE_MARKS starts with
_CODE_BLOCK = re.compile(r"^[^\S\n]*(```|~~~).*?(?:^[^\S\n]*\1[^\n]*$|\Z)", re.M | re.S)
# reStructuredText's literal block (group 2): the lines indented under a line ending in "::" or
# a ".. code-block::" directive ("   .. code-block:: bash\n\n       uv run pytest"; not under
# another directive: ".. note::" holds prose)
_RST_LITERAL = re.compile(
    r"^([^\S\n]*)(?:\.\.[^\S\n]+(?:code-block|code|sourcecode)::.*|(?!\.\.[^\S\n]).*::)[^\S\n]*\n"
    r"((?:(?:\1[^\S\n]+.*)?\n)+)",
    re.M,
)
# a line of an interactive session, wherever a sentence in it starts ("    >>> p.rlimit(psutil.
# RLIMIT_NOFILE, (5, 5))  # set resource limits")
_PROMPT_LINE = re.compile(r"[^\S\n]*(?:>>>|\.\.\.[^\S\n]|\$[^\S\n])")
# an HTML heading (a README's centred title or tagline): a heading, no prose, like "# ..."
_HTML_HEADING = re.compile(r"<h([1-6])\b[^>]*>.*?(?:</h\1\s*>|\Z)", re.I | re.S)
_QUOTE_MARKS = re.compile(r"(?:>[^\S\n]*)+")  # "> " of a blockquote (">>>", a prompt, is no prose)
# a table row, a prompt, a heading, a rule, a list item that is only a link (a table of contents)
_NOT_PROSE = re.compile(
    r"^(?:\||>>>|\$ |\s*#{1,6}\s|[-=*_]{3,}\s*$|\s*(?:[-*+]|\d+[.)])\s+\[[^\]]*\]\([^)]*\)\s*$)"
)
# A changelog entry's credit ("... by @user in #123", "(#123)"): the entry is a change, not a fact
_CHANGELOG_CREDIT = re.compile(r"\bby @[\w-]+|\b(?:in|PR|fixes|closes|see) #\d+\b|\(#\d+\)")


def unmarked(sentence: str) -> str:
    """A sentence without markdown's inline marks or HTML tags: "**optional**" -> "optional",
    '<a href="x"><img src="y.svg"></a>' -> nothing."""
    if not _ANY_MARK.search(sentence):  # plain prose, most sentences: no pattern can match
        return sentence
    for pattern, replacement in _INLINE_MARKS:
        sentence = pattern.sub(replacement, sentence)
    return sentence


# Where neither a full stop nor a line break ends a sentence: a link, inline code, a bare url.
_NO_SENTENCE_END = re.compile(
    r"\[[^\]]*\]\([^)\s]*\)|`[^`\n]+`|\bhttps?://[^\s<>]*[^\s<>.,;:!?'\")\]]"
)


_NEUTRAL = str.maketrans(".!?\n", "___ ")


def prose_sentences(text: str) -> list[tuple[int, int]]:
    """`sentences(text)` outside code blocks (fenced, or reStructuredText's literal blocks),
    table rows, prompts and rules, none cut inside a link's target or inline code
    ("[Trainer](https://x.io/a.Trainer.html)")."""
    code = [m.span() for m in _CODE_BLOCK.finditer(text)] if "``" in text or "~~" in text else []
    if "::" in text:
        code += [m.span(2) for m in _RST_LITERAL.finditer(text)]
    if "<h" in text or "<H" in text:
        code += [m.span() for m in _HTML_HEADING.finditer(text)]
    masked = _NO_SENTENCE_END.sub(
        lambda m: m.group(0).translate(_NEUTRAL), text
    )  # the same length: its spans are the text's
    return [
        (_after_quote_marks(text, start, end), end)
        for start, end in sentences(masked)
        if not any(a <= start < b for a, b in code)
        and not _NOT_PROSE.match(text[start:end])
        and not _PROMPT_LINE.match(text, text.rfind("\n", 0, start) + 1)
    ]


def _after_quote_marks(text: str, start: int, end: int) -> int:
    """Where a sentence starts past a blockquote's "> " ("> Chardet reports ..."): its first
    word is its subject."""
    if text[start] != ">":
        return start
    at = _QUOTE_MARKS.match(text, start, end).end()
    return at if at < end else start


def _shouted(sentence: str) -> bool:
    """Mostly capitals over several words: a licence's disclaimer ("THE SOFTWARE IS PROVIDED
    AS IS ..."), a banner or a heading, not prose."""
    letters = [c for c in sentence if c.isalpha()]
    return len(sentence.split()) >= 4 and sum(c.isupper() for c in letters) > 0.6 * len(letters)


# A word after a determiner or a number: a noun (or its adjective) wherever it stands in the text
_AFTER_DETERMINER = re.compile(  # "a wheel" also as "a" + the word: group 1
    r"\b(?:(an?)|the|these|those|its|their|our|your|each|every|many|some|all|\d+)\s+([a-z][\w-]*)",
    re.IGNORECASE,
)
# A capitalised word after a lower-case word or a comma: a name wherever it stands in the text
_NAME_MID_SENTENCE = re.compile(r"(?<=[a-z,;:] )[A-Z][\w-]*")
# Words that point to the text around the sentence: "the above command", "the same logic"
CONTEXTUAL = {"above", "below", "following", "aforementioned", "latter", "same"}
# a value that points around its sentence ("the following output", "above"; not "above the city")
_POINTING = re.compile(
    r"the\s+(?:above|below|following|aforementioned)\b|(?:above|below|follows)$", re.I
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
# a list item's or a line's bold term, its gloss after it: "- **[dedup](...)** blocks for ..."
_BOLD_TERM = re.compile(
    r"^\s*(?:(?:[-*•]|\d+[.)])\s+)?(?:\*\*([^*\n]+)\*\*|__([^_\n]+)__)(?=\s*(?:[a-z(]|--|[-–—:]))"
)
# what follows an instruction's verb: "Check for ...", "Welcome to ...", "Run the ..."
_INSTRUCTION_NEXT = PREPS | ARTICLES | {"your"}
_SUMMARY_NEXT = ARTICLES | {"your", "its", "one", "each", "every", "all"}


def _context_bound(subject: str, reading: _Reading, bulleted: bool) -> bool:
    """Whether a subject only makes sense beside its sentence: it points around it ("the above
    code", "These files", "This API", "Instances of this class"), a list item opens with a
    verb ("- Fix exception raised ...", "- Updated UNICODE_RANGES ..."), or it opens with a capitalised word the text never
    writes as a name and that is no noun ("Additional features", "Only", "Together with ...";
    "Greater London" has a name in it). "Python" written as a name elsewhere in the text, and
    the document's title, stay subjects."""
    words = subject.split()
    if (CONTEXTUAL | {"this", "these", "those"}) & {w.lower() for w in words}:
        return True
    first = words[0]
    if not first[:1].isupper() or not _unnamed(first, reading):
        return False
    kinds = _lemmas(first.lower())
    if bulleted and "VERB" in kinds:
        return True
    following = words[1].lower() if len(words) > 1 else ""
    verb = kinds.get("VERB", ("",))[0]
    if verb == first.lower() and following in _INSTRUCTION_NEXT:
        return True  # an instruction: "Check for existing ...", "Welcome to bm25s"
    if verb == first.lower() and following in ("and", "or") and _two_verbs(words[2:]):
        return True  # "Read and parse one configuration file" (not "Salt and pepper are")
    if verb and first.lower() == _third_person(verb) and following in _SUMMARY_NEXT:
        return True  # a docstring's summary, its subject left out: "Compiles a single command"
        # (not "Instances of ...": a plural noun)
    if kinds and "NOUN" not in kinds:  # an English word (not "Danube", "NumPy"), no noun
        return not any(word[:1].isupper() for word in words[1:])
    return False


def _two_verbs(rest: list[str]) -> bool:
    """Whether `rest` (after "X and") opens with a base-form verb and its object's determiner:
    "parse one configuration file"."""
    return len(rest) > 1 and rest[1].lower() in _SUMMARY_NEXT and _base_verb(rest[0].lower())


def heuristic_statements(doc: dict) -> list[dict]:
    """Statements of one document by the generic subject / verb group / object baseline."""
    text, topic = doc["text"], doc.get("title")
    names = set(_NAME_MID_SENTENCE.findall(text))
    nouns, kinds = set(), set()
    for article, word in _AFTER_DETERMINER.findall(text):
        nouns.add(word.lower())
        if article:
            nouns.add(f"a {word.lower()}")
    out = []
    for start, end in prose_sentences(text):
        sentence = text[start:end]
        if len(sentence) > MAX_SENTENCE_CHARS or len(sentence.split()) < 3:
            continue
        plain = unmarked(sentence)
        if _CHANGELOG_CREDIT.search(plain) or _shouted(sentence):
            continue
        term = _BOLD_TERM.match(sentence)
        reading = _Reading(topic, bool(doc.get("title")), names, nouns, bool(term), kinds)
        found = _clause(plain, reading)
        if found is None or (
            term
            and folded_words(found[0]) != folded_words(unmarked(term.group(1) or term.group(2)))
        ):
            continue  # "**[filters](...)** filter out ...": the gloss's subject is the term
        subject, statements = found
        bulleted = bool(_BULLET.match(plain)) and not term  # "- **Requests** is ...": a name
        if subject != topic and _context_bound(subject, reading, bulleted):
            continue
        topic = topic or subject
        topic_key = _topic_key(topic)
        # the statement's sentence without its list mark ("- Async support becomes optional.")
        mark = _BULLET.match(sentence)
        said = (start + mark.end() if mark else start, end)
        for entity, relation, whole, time in statements:
            if _topic_key(entity) == topic_key:
                kinds |= _kinds_said(relation, whole)  # "is a river": "The river" is the topic
            # "X and, in 2021, Y" cut at the comma; "a model of the atom in" (cut at "which")
            whole = _DANGLING_END.sub("", " ".join(whole.split()))  # one line: text wraps
            if not whole:
                continue
            for value in _items(whole):
                record = _statement(
                    entity, relation, value, text[slice(*said)], said, doc, time, "heuristic"
                )
                if (
                    record
                    and record["entity"]
                    and record["entity"] != normalise(value)
                    and value.lower() not in OBJECT_PRONOUNS
                    and value.split()[0].lower() not in DEICTIC
                    and not _POINTING.match(value)
                ):
                    out.append(record)
    return out


# Words a value does not end with: it was cut short, by a clause or a time taken out of it
# ("6.5 metres across" ends well)
_DANGLING_END = re.compile(
    r"(?:(?:^|\s+)(?:and|or|but|nor|of|to|in|on|at|for|with|from|by|into|about|the|an?|like"
    r"|as follows|using|including))+$",
    re.IGNORECASE,
)


def _items(value: str) -> list[str]:
    """ "Berlin, Hamburg and Munich" -> the three names; any other value -> [value]."""
    parts = re.split(r",\s+(?:and\s+)?|\s+and\s+", value)
    names = [re.sub(r"^the\s+", "", p) for p in parts]
    if len(parts) > 1 and all(n[:1].isupper() and len(n.split()) <= 5 for n in names):
        return parts
    return [value]


def _without_leading_adverb(body: str) -> str:
    """ "Instead, it uses ..." and "Typically actions are ..." without their adverb; not
    "Extremely fast ..." or "Correctly remove ...", whose adverb goes with an adjective or a
    verb."""
    lead = re.match(r"([A-Z][a-z]+),\s+|([A-Z][a-z]+ly)\s+(\S+)", body)
    if not lead or not _adverb((lead.group(1) or lead.group(2)).lower()):
        return body
    if lead.group(2):
        kinds = _lemmas(lead.group(3).lower())
        if kinds and ("NOUN" not in kinds or "ADJ" in kinds):
            return body
        return body[lead.start(3) :]
    return body[lead.end() :]


_DETERMINERS = ARTICLES | {"each", "every", "any", "all", "your", "this", "these", "those"}


@dataclass
class _Reading:
    """What a sentence is read with."""

    topic: str | None  # the document's title, else its first subject
    titled: bool  # the topic is the title: only then does "The company" / "This module"
    # stand for it (in a docstring, "This module" is not the first sentence's subject)
    names: set[str]  # the words the document writes as names (capitalised mid-sentence)
    nouns: set[str] = field(default_factory=set)  # words the text writes after a determiner,
    # and "a X" for those it writes after "a" or "an"
    glossed: bool = False  # the sentence is a bold term and its gloss
    kinds: set[str] = field(default_factory=set)  # what the text calls its topic ("X is a
    # river" -> the river group), besides _DOCUMENT_KINDS: only such a "The X" stands for it


def _clause(sentence: str, reading: _Reading):
    """(subject name, [(entity, relation, value, time)]) of a sentence's main clause, or None."""
    body = _BULLET.sub("", sentence)
    bulleted = body != sentence
    body = _without_leading_adverb(body)
    body = re.sub(
        r"^(?:In|On|Since|By|During|As of|After|Before|Together with|Along with|Unlike|Like)"
        r"\s+[^,]{1,40},\s*",
        "",
        body,
    )
    body = re.sub(r"^(?:Today|Nowadays|Now|Currently)\s+(?=[A-Z])", "", body)  # "Today Siemens"
    # "In the semi-final Germany beat ..." (no comma): a lower-case phrase, then a name
    body = re.sub(
        r"^(?:In|On|At|During|After|Before)\s+the(?:\s+[a-z][\w-]*){1,3}\s+(?=[A-Z])", "", body
    )
    body = re.sub(
        r"^(?:In|On|Since|By)\s+(?:\d{1,2}\s+)?(?:[A-Z][a-z]+\s+)?\d{3,4}\s+(?=[A-Za-z])", "", body
    )
    lead_time = re.match(
        r"^(?:In|On|Since|As of)\s+((?:\d{1,2}\s+)?(?:[A-Z][a-z]+\s+)?\d{3,4})\b", sentence
    )
    tokens = list(_WORD.finditer(body))
    verb_at = None
    for i, tok in enumerate(tokens[:14]):
        if i == 0 or tok.group(0) in ",;:()":
            continue
        if tokens[i - 1].group(0).lower() in OWNERS:
            continue  # "His works include ...": an owned word is a noun, not the verb
        if _verb_lemma(tok.group(0)) or _plural_verb(tokens, i) or _after_owned(tokens, i):
            if _noun_before_verb(tokens, i):  # "files are used": "files" is the subject's noun
                continue
            if _after_article(tokens, i):
                continue  # "a more formalized way", "the latest released version": an adjective
            if _compound_adjective(tokens, i) or _noun_before_preposition(tokens, i):
                continue  # "The uname command for BSD based distributions", "CLI JSON output
                # with ..."
            if _reduced_relative(tokens, i):
                continue  # "The oldest version supported is 2022.8.1": the subject's participle
            if _noun_taken_for_verb(tokens, i, reading):
                continue  # "Table Mountain, about 1,085 metres high, rises ...": a noun
            verb_at = i
            break
    topic = reading.topic
    if verb_at is None:
        return None
    before = body[: tokens[verb_at].start()].rstrip()
    if before.endswith(" there"):
        # "Behind the scenes there are ...": an expletive; "The museum there displays ...": a place
        if tokens[verb_at].group(0).lower() in ("is", "are", "was", "were"):
            return None
        before = before.removesuffix(" there")
    subject = " ".join(_clean(before).split())
    if any(_DENIED.search(word) for word in subject.split()):
        return None  # "Its summit isn't reached by ...": the verb was taken for the subject's
    first_part, _, rest = subject.partition(", ")
    if {"you", "we"} & set(rest.split()):
        return None  # "(On Linux,) macOS, and Windows, you can install ...": the reader's
    if rest and "," not in rest and re.search(r"\b(?:and|or)\b", rest) and rest.islower():
        return None  # "Local, remote and other file systems are ...": a list, cut at its comma
        # (not "Spanish, Quechua and Aymara", "Victoria Falls, on the border between Zambia and")
    if re.search(r"\b(?:which|who|that)\b", rest) and rest.split()[0] not in ("which", "who"):
        return None  # "Fixup some build errors, mostly README syntax which stopped ...": the
        # verb is a relative clause's
    if rest.lower() in ("it", "he", "she") and not re.search(r"[_.(]", first_part):
        # the pronoun after an opening phrase is the subject: "Known as the Waltz King, he wrote",
        # "(Together with its longest tributary,) the Missouri, it forms ..." (a code name
        # before it is what it stands for: "VERSION_TUPLE, it will be removed ...")
        first_part = rest
    subject = first_part  # "Mont Blanc, on the border ..., is"
    words = subject.split()
    if len(words) > 1 and words[-1] in ("-", "–"):
        words.pop()  # a definition list's term: "* doublequote - controls the handling ..."
    if [w.lower() for w in words[-2:]] == ["no", "longer"]:
        return None  # "Cookie handling no longer gets slower": denied
    while len(words) > 1 and (words[-1].lower() in ADVERBS or words[-1].endswith("ly")):
        if words.pop().lower() in NEGATIONS:  # "It also contains ..."; not "It never ..."
            return None
    if len(words) > 2 and words[-2].lower() == "to" and _base_verb(words[-1]):
        return None  # "Ability to make requests ...": the verb taken is the infinitive's object
    subject = " ".join(words)
    # the writers' own name or code is said without them: "Our heappop() method returns ..."
    # ("Our issue tracker" names nothing: no subject, below)
    ours = re.match(r"(?:Our|My)\s+(?:own\s+)?(\S*[A-Z_.(].*)$", subject)
    if ours:
        subject, words = ours.group(1), ours.group(1).split()
    first = subject.split()[0].lower().lstrip("_*") if subject.split() else ""  # "_While ..."
    owned = re.match(r"^(?:Its|His|Her|Their)\s+((?:[a-z][\w-]*\s+){0,3}[a-z][\w-]*)$", subject)
    if owned and topic:  # "Its deepest point is ..." -> (topic, deepest point, ...)
        subject = f"{topic}'s {owned.group(1)}"
    elif subject.lower() in PRONOUNS:
        if not topic or _expletive(subject, tokens[verb_at + 1 : verb_at + 6]):
            return None
        subject = topic
    elif re.fullmatch(r"(?:[Tt]he|[Tt]his)\s+[a-z][\w-]*", subject):  # "The company ..."
        if not topic or not reading.titled or _plural(words[-1]):  # not "The attacks use"
            return None
        if not _names_topic(words[-1], reading):
            return None  # "This option is ...", "The limit protects ...": not the topic
        subject = topic
    elif topic and subject == topic:
        pass  # the title, whatever its first word: "One Hundred Years of Solitude is ..."
    elif (
        re.split(r"['’]", first)[0] in BAD_SUBJECT_START  # "We've yanked ..."
        or (first in ("it", "he", "she", "they") and len(words) > 1)  # "It supersedes the
        # standard library's encodings.idna, which implements ...": its verb unknown to the lexicon
        or first in OWNERS  # "Its predecessor function platform.dist": not one of the topic's
        # words (above), and no name; "Our inspiration comes from ...": the writers', no entity
        or first in PREPS
        or first in AUX
        or first in SUBORDINATORS
        or (  # a gerund: "Reading uses the existing readers" ("Oxford, Reading and London": a name)
            first.endswith("ing")
            and first[:1].isalpha()
            and (len(words) > 1 or "VERB" in _lemmas(first) and _unnamed(words[0], reading))
        )
        or (len(words) > 1 and words[1][:1].islower() and _only(first, "VERB"))  # "Improved the
        # detection ...": a changelog's or a command's verb ("Mars", "Google" are verbs too)
        or (bulleted and len(words) == 1 and _only(first, "VERB"))  # "- Improve discriminated ..."
        or not re.fullmatch(r"[\w][\w\s.,'’&/()-]*", subject)
        or "--" in subject
        or re.search(r"\s[-–—]\s", subject)  # "make - For running ...": a term and its gloss
        or re.search(r"\b(?:it|that|there|he|she|what|who|here)['’]s\b", subject, re.I)  # a verb
        or subject.count("(") != subject.count(")")  # "a dict (": cut inside a parenthesis
        or subject.find(")") < subject.find("(")  # "Authentication) and RFC 2487 (Secure SMTP"
        or (len(words) > 1 and _base_verb(first.rsplit("-", 1)[-1]) and words[1] in _DETERMINERS)
        # "make a UUID", "De-duplicate any headers ...", "(In interactive mode,) end each input
        # with ...": an instruction
        or (len(words) > 1 and _only(first, "ADV") and _base_verb(words[1]))  # "Correctly
        # remove SIG remnant in ...": a changelog's instruction
        or len(subject.split()) > 8
        or not re.search(r"[A-Za-z]", subject)
        or set(subject.lower().split()) & INNER_STOP
        or subject.split()[-1].lower() in PREPS | ARTICLES | {"and", "or", "but"}  # "Batch
        # operations release the GIL and (can run in ...)": the verb before "and" was missed
    ):
        return None
    # the verb group: auxiliaries, adverbs, the main verb, a particle/preposition
    group, j = [], verb_at
    while j < len(tokens):
        word = tokens[j].group(0)
        lower = word.lower()
        if (lower in NEGATIONS or _DENIED.search(lower)) and group:
            return None  # "does not require": its statement would say the opposite
        if lower in ADVERBS and group:
            j += 1
            continue
        after_aux = group and group[-1].lower() in AUX and _base_verb(word)
        if not group and j == verb_at and not _verb_lemma(word):
            group.append(_third_person(word))  # "His works include": the relation "includes"
            j += 1
            continue
        if (
            lower in AUX
            or (_verb_lemma(word) and not group)
            or (group and _is_participle(word))
            or after_aux
        ):
            group.append(word)
            j += 1
            continue
        break
    if group and group[0].lower() in ("being", "been"):
        return None  # "HTTP/2 flag being passed down to ...": a participle, no finite verb
    following = tokens[j].group(0).lower() if j < len(tokens) else ""
    dated = j + 1 < len(tokens) and re.fullmatch(r"\d{3,4}", tokens[j + 1].group(0))
    be = "was" if dated else "is"  # "The Bologna Process, begun in 1999": past
    bare_participle = len(group) == 1 and _is_participle(group[0])
    if group and _participle_only(group[0]):
        if following not in PREPS:
            return None  # "Markdown parser done right"
        group.insert(0, be)  # "EPFL, known as ...": its passive
    elif bare_participle and _passive_before(group[0], following):
        group.insert(0, be)  # "First release maintained by Pydantic"
    elif bare_participle and following in PREPS and _headline_subject(subject.split(), reading):
        return None  # "Performance measured on 1GB of text": a headline, no finite verb
    elif bare_participle and sentence.rstrip().endswith(":"):
        return None  # a label: "Up-to-date package also provided through conda-forge:"
    if not group or all(w.lower() in AUX for w in group) and group[0].lower() in MODALS:
        return None  # "systemd will cleanly ...": a modal alone is no relation
    idiom = _IDIOMS.get(_verb_lemma(group[-1]) or "", ())
    if j < len(tokens) and tokens[j].group(0).lower() in idiom:  # "took place on the Seine"
        if j + 1 == len(tokens) or tokens[j + 1].group(0).lower() not in PREPS:
            return None  # "Thirteen teams took part": no value
        group.append(tokens[j].group(0))
        j += 1
    if j < len(tokens) and tokens[j].group(0).lower() in PARTICLES:  # "is made up of"
        group.append(tokens[j].group(0))
        j += 1
    if j < len(tokens) and tokens[j].group(0).lower() in PREPS | {"like"}:  # "behaves like"
        group.append(tokens[j].group(0))
        j += 1
        if group[-1].lower() == "to" and j < len(tokens) and _base_verb(tokens[j].group(0)):
            return None  # "began to lose ...": an infinitive, not a value
        if j < len(tokens) and tokens[j].group(0).lower() in ("with", "of", "to"):
            group.append(tokens[j].group(0))  # "will blend in with", "is out of"
            j += 1
    rest = body[tokens[j].start() :] if j < len(tokens) else ""
    value, time = value_phrase(rest)
    time = time or (lead_time.group(1) if lead_time else None)
    if (
        not value
        or len(value.split()) > 14
        or value.split()[0].lower() in ("and", "or", "but", "not", "so", "if", "unless", "because")
        or value[0] in "/|="  # "billion laughs / exponential entity expansion": a heading
        or re.search(r"\s(?:is|are|was|were|has|have|will|can)\s", f" {value} ")  # a clause
        or _says_nothing(value, group)
    ):
        return None
    return subject, _relations(subject, group, value, time)


# a verb and a bare noun that say one thing with the preposition after them ("keeps track of",
# "took place on", "took part in"): the noun is no value
_IDIOMS = {
    "take": {"part", "place", "care", "advantage", "note", "account", "charge", "hold", "root"},
    "keep": {"track"},
    "make": {"use", "sense"},
    "pay": {"attention"},
}


# "as needed", "as required": with "as", a word that says how, not what
_AS_IDIOMS = {
    "needed",
    "required",
    "necessary",
    "appropriate",
    "possible",
    "expected",
    "usual",
    "planned",
    "described",
    "shown",
    "follows",
    "well",
}


def _says_nothing(value: str, group: list[str]) -> bool:
    """A value that only qualifies its verb: an adverb ("points to exactly"), "by default",
    "as needed" ("Releases are made as needed"), an aside ("will be respected (such as
    retries)")."""
    lower, last = value.lower(), group[-1].lower()
    adverb = "ADV" in _lemmas(lower) and "NOUN" not in _lemmas(lower)
    return (
        _only(lower, "ADV")
        or (adverb and _verb_lemma(last) not in ("be", "become"))  # "The unit tests alone"
        or (lower == "default" and last == "by")
        or (lower in _AS_IDIOMS and last == "as")
        or lower.startswith("(")
    )


# "has a couple of changes", "a number of tools": an amount, no attribute of the subject
_QUANTITY_NOUNS = {"couple", "lot", "lots", "number", "variety", "range", "host", "bunch", "set"}
# "a total area of", "an average depth of": still the attribute
_MEASURE_ADJECTIVES = {"total", "average", "maximum", "minimum", "estimated", "mean", "annual"}


def _no_attribute(noun: str) -> bool:
    """Whether "has a/an/the <noun> of" names no attribute: an amount ("a couple of"), or a
    noun an adjective qualifies ("an extensive list of", "a unique way of"; "a total area of"
    is the area)."""
    words = noun.split()
    return words[0] in _QUANTITY_NOUNS or (
        len(words) > 1 and _only(words[0], "ADJ") and words[0] not in _MEASURE_ADJECTIVES
    )


def _relations(subject: str, group: list[str], value: str, time) -> list[tuple]:
    """Statements of one clause: the verb relation, plus noun relations where English has one
    ("X is the capital of Y" -> (Y, capital, X); "X has a population of N" -> (X, population, N);
    "The capital of Y is X" -> (Y, capital, X); "X is a river 2,850 km long" -> (X, length, ...))."""
    lemmas = [(_verb_lemma(w) or w.lower()) if w.lower() in AUX else w.lower() for w in group]
    copula = lemmas[0] == "be" and len(group) == 1
    possess = lemmas[0] == "have" and len(group) == 1
    out = []
    owner = re.match(r"^(.+?)['’]s\s+((?:[a-z][\w-]*\s+){0,3}[a-z][\w-]*)$", subject)
    if copula and owner:  # "Austria's capital is Vienna"
        return [(owner.group(1), owner.group(2), value, time)]
    of = re.match(
        r"^(?:the|The)\s+((?:[a-z][\w-]*\s+){0,3}[a-z][\w-]*)\s+of\s+(?:the\s+)?(.+)$", subject
    )
    if copula and of:  # "The capital of France is Paris"
        return [(of.group(2), of.group(1), value, time)]
    noun_of = re.match(r"^(the|a|an)\s+((?:[a-z][\w-]*\s+){0,3}[a-z][\w-]*)\s+of\s+(.+)$", value)
    if (copula or possess) and noun_of and not (possess and _no_attribute(noun_of.group(2))):
        article, noun, rest = noun_of.groups()
        if possess:  # "has a population of about 68 million"
            return [(subject, noun, rest, time)]
        out.append((subject, f"is {article} {noun} of", rest, time))
        if article == "the" and rest[:1].isupper():  # "Paris is the capital of France"
            out.append((re.sub(r"^the\s+", "", rest), noun, subject, time))
        return out
    if copula:
        if re.match(r"^(?:a|an|the)\s+[a-z][\w-]*(?:,?\s|$)", value):  # "a soft, silvery metal"
            words, tail = [], [w.removesuffix(",") for w in value.split()[1:]] + [""]
            for word, after in zip(tail, tail[1:]):
                if (
                    word in PREPS
                    or word in HEDGES
                    or word in ("that", "which", "who")
                    or not word.replace("-", "").isalpha()
                    or (words and _is_participle(word) and _ends_phrase(after))
                ):  # "a project developed by ...", not "a fully featured HTTP client"
                    break
                words.append(word)
            words = [w for w in words if not w.endswith("ly") and w not in ORDINALS | {"ever"}]
            words = words[-2:]
            if words and words[-1].islower():
                out.append((subject, "is a", " ".join(words), time))
            size = re.search(
                r"(\d[\d,.]*\s*(?:\w+\s+){0,2}?\w+)\s+(long|high|tall|wide|deep|old)\b", value
            )
            if size:
                out.append((subject, ADJECTIVE_NOUNS[size.group(2)], size.group(1), time))
            return out
    if possess:
        counted = re.match(r"^(?:about\s+|around\s+|over\s+)?(\d[\d,.]*)\s+(.+)$", value)
        if counted:  # "has 95 known moons"
            return [(subject, f"number of {counted.group(2)}", counted.group(1), time)]
    out.append((subject, " ".join(w.lower() for w in group), value, time))
    return out


# --- merging into records ---------------------------------------------------------------------


def build_records(statements: list[dict]) -> list[dict]:
    """Entity records from statements of all documents: one per normalised key, with the
    statements and sources of every document that says something about it; keys that differ
    only by generic type words are merged (into the most frequent one)."""
    builder = RecordBuilder(by_source=False)
    for statement in statements:
        builder.add(statement)
        hint = type_hint(statement)
        if hint:
            builder.add_hint(hint)
    return [record for record, _, _ in builder.records(mentions=False)]


def type_hint(statement: dict) -> dict | None:
    """What a statement says of its value's type, for the record of the value: (Austria,
    capital, Vienna) -> {"hint": "type", "entity": "vienna", "noun": "capital", "at": its
    place}. The value's record may be in another partition than the statement's, so the
    map side sends the hint there (`engine.memory_store.write_statements`): until 2026-12-05
    types were inferred only from statements of the same partition, so at the 1 TB plan's
    16,384 partitions almost never (46 records of the bundled corpus typed this way in one
    partition, 2 in 16). None when the relation names no type or the value is the entity
    itself."""
    target, words = statement["value"].get("entity"), statement["relation"].split()
    if not target or not _names_a_type(words) or target == statement["entity"]:
        return None
    place = [str(statement["source"]), statement["span"][0], statement["relation"]]
    return {
        "hint": "type",
        "entity": target,
        "noun": words[-1],
        "at": [*place, statement["entity"]],
    }


def _tally(counts: dict, item, position, count: int = 1) -> None:
    """counts[item] = [how many, first position]: a Counter whose ties go to the first seen."""
    entry = counts.get(item)
    if entry is None:
        counts[item] = [count, position]
    else:
        entry[0] += count
        entry[1] = min(entry[1], position)


def _most_common(counts: dict):
    return min(counts.items(), key=lambda kv: (-kv[1][0], kv[1][1]))[0] if counts else None


def _names_a_type(words: list[str]) -> bool:
    """A relation whose value it types: (Austria, capital, Vienna) -> Vienna is a "capital"."""
    return bool(
        words
        and words[0] not in AUX
        and all(w.isalpha() and w.islower() for w in words)
        and "of" not in words
        and _verb_lemma(words[0]) is None
    )


class _Distinct:
    """The distinct items of a stream, and with `cap` a stable sample of them: the `cap` + 1
    smallest by stable hash, the same whatever the order (one spare for an item taken out at
    the end: a record's own key among its links). Past 2 x `cap` + 2 items they are counted by
    their 64-bit hashes (8 bytes per distinct item, not per occurrence) and the rest let go.
    Every item is kept when `cap` is 0."""

    __slots__ = ("cap", "kept", "hashes", "hashing", "_unique")

    def __init__(self, cap: int):
        self.cap, self.kept, self.hashing = cap, {}, False  # kept: item -> its hash, or None
        self.hashes, self._unique = array("Q"), 0

    def add(self, item: str) -> None:
        if item in self.kept:
            return
        hashed = stable_hash(str(item)) if self.hashing else None
        self.kept[item] = hashed
        if hashed is not None:
            self.hashes.append(hashed)
        self._bound()

    def merge(self, other: _Distinct) -> None:
        if self.hashing or other.hashing:
            self._hash()
            other._hash()
            self.hashes += other.hashes
        self.kept |= other.kept
        self._bound()

    def _hash(self) -> None:
        """From here on counted by hash: every item kept so far is hashed."""
        if not self.hashing:
            self.hashing = True
            for item in self.kept:
                self.kept[item] = hashed = stable_hash(str(item))
                self.hashes.append(hashed)

    def _bound(self) -> None:
        if not self.cap:
            return
        if len(self.kept) >= 2 * self.cap + 2:
            self._hash()
            self.kept = dict(sorted(self.kept.items(), key=_by_hash)[: self.cap + 1])
        if len(self.hashes) >= 2 * self._unique + 65_536:
            self._compact()

    def _compact(self) -> None:
        """Sort the hashes and drop repeats, in place (a copy of them only when there are
        repeats: np.unique's copies cost a hub's reduce 35 MB of RSS at 800,000 documents)."""
        hashes = np.frombuffer(self.hashes, np.uint64)
        hashes.sort()
        new = np.ones(len(hashes), bool)
        np.not_equal(hashes[1:], hashes[:-1], out=new[1:])
        unique = int(np.count_nonzero(new))
        if unique < len(hashes):
            hashes[:unique] = hashes[new]
        del hashes  # the array can be resized once no view of it is left
        del self.hashes[unique:]
        self._unique = unique

    def count(self, without: str | None = None) -> int:
        """How many distinct items were added, `without` not counted."""
        if not self.hashing:
            return len(self.kept) - (without in self.kept)
        self._compact()
        if without is None:
            return self._unique
        hashes = np.frombuffer(self.hashes, np.uint64)
        gone = np.uint64(stable_hash(str(without)))
        at = int(np.searchsorted(hashes, gone))
        return self._unique - bool(at < len(hashes) and hashes[at] == gone)

    def sample(self, without: str | None = None) -> list[str]:
        """The `cap` items smallest by hash, `without` left out (every item when `cap` is 0)."""
        if not self.cap:
            return [item for item in self.kept if item != without]
        hashed = (
            (item, stable_hash(str(item)) if h is None else h) for item, h in self.kept.items()
        )
        return [item for item, _ in sorted(hashed, key=_by_hash) if item != without][: self.cap]


def _by_hash(kv: tuple) -> tuple:
    return kv[1], kv[0]


@dataclass
class _Names:
    """Which record a name means, in one partition: every key -> its record's key
    (`canonical`), and an alias key -> its largest record's (`by_alias`), for a value's name
    that is no key ("the danube" read as "danube river")."""

    canonical: dict[str, str]
    by_alias: dict[str, str]

    def of(self, name: str) -> str | None:
        """The key of the record `name` means, or None when none is in this partition."""
        return self.canonical.get(name) or self.by_alias.get(alias_key(name))


VALUES_HELD = 1 << 14  # a key's value index keys held in memory, the rest on disk


class _Group:
    """What a record needs of its statements: those its sample could take (the `cap` smallest
    by (hash, position); every one when `cap` is 0) and aggregates of all of them - names,
    types, mentions, sources, the value index's keys (whose entity values are its links) and
    the first numeric statement of each relation. Once a key holds more than 2 x `cap`, its
    memory follows its distinct names, relations and (8 bytes each) documents and mentions:
    its values (the value index's keys, a hub's growing with the corpus) are held VALUES_HELD
    at a time and spilled to disk. A value is a number or an entity, never both
    (`typed_value`)."""

    __slots__ = (
        "cap",
        "count",
        "kept",
        "names",
        "types",
        "mentions",
        "values",
        "numeric",
        "sources",
        "last_source",
    )

    def __init__(self, cap: int):
        self.cap, self.count, self.kept = cap, 0, []  # kept: (hash, position, statement)
        self.names, self.types = {}, {}  # _tally counts
        self.mentions, self.sources = _Distinct(cap), _Distinct(cap)
        self.values = DistinctRows(VALUES_HELD)  # (relation key, value, names an entity)
        self.numeric: dict[str, tuple] = {}  # relation key -> (position, statement)
        self.last_source = None

    def add(self, position: tuple, s: dict) -> None:
        """`position`: (source, span start, relation, arrival), the statement's place in its
        record (the arrival in the input breaks ties as the records' stable sort did)."""
        self.count += 1
        sample = (
            stable_hash(f"{s.get('source')}|{s.get('span')}|{s['relation']}") if self.cap else 0
        )
        self.kept.append((sample, position, s))
        if self.cap and len(self.kept) >= 2 * self.cap:
            self._trim()
        _tally(self.names, s["entity_name"], position)
        value, relation = s["value"], s["relation"]
        if relation == "is a":
            _tally(self.types, value["text"].split()[-1], position)
        target, rel = value.get("entity"), relation_key(relation)
        for mention in s.get("mentions") or ():
            self.mentions.add(mention)
        if value.get("number") is not None:
            self.values.add((rel, f"{value['number']:g}", False))
            if rel not in self.numeric or position < self.numeric[rel][0]:
                self.numeric[rel] = (position, s)
        else:
            self.values.add((rel, target, True) if target else (rel, value_key(value), False))
        if s["source"] != self.last_source:  # a document's statements arrive together
            self.last_source = s["source"]
            self.sources.add(s["source"])

    def _trim(self) -> None:
        self.kept.sort(key=lambda item: item[:2])
        del self.kept[self.cap :]

    def rank(self, rank: tuple) -> None:
        """Place this key's statements among a record's other keys: positions become (source,
        span, relation, rank, arrival), rank the key's first statement - the order in which
        build_records met the keys, which broke ties between two keys' statements."""
        self.kept = [(h, _ranked(position, rank), s) for h, position, s in self.kept]
        for tally in (self.names, self.types):
            for entry in tally.values():
                entry[1] = _ranked(entry[1], rank)
        self.numeric = {rel: (_ranked(p, rank), s) for rel, (p, s) in self.numeric.items()}

    def merge(self, other: _Group) -> None:
        self.count += other.count
        self.kept += other.kept
        for mine, theirs in ((self.names, other.names), (self.types, other.types)):
            for item, (count, first) in theirs.items():
                _tally(mine, item, first, count)
        self.mentions.merge(other.mentions)
        self.values.merge(other.values)
        for rel, found in other.numeric.items():
            if rel not in self.numeric or found[0] < self.numeric[rel][0]:
                self.numeric[rel] = found
        self.sources.merge(other.sources)
        if self.cap and len(self.kept) > self.cap:
            self._trim()

    def statements(self) -> list[dict]:
        """The sample's statements (all when there are at most `cap`), in record order."""
        kept = self.kept
        if self.cap and self.count > self.cap:
            kept = sorted(kept, key=lambda item: item[:2])[: self.cap]
        return [s for _, _, s in sorted(kept, key=lambda item: item[1])]

    def links(self, key: str, names: _Names, mentions: bool) -> tuple[list[str], int]:
        """The record's links - the entities of its values that are records (`names`),
        and with `mentions` the entities its documents mention - its sample of them (sorted)
        and how many there are."""
        links = _Distinct(self.cap)
        if mentions:
            links.merge(self.mentions)
        for _, value, entity in self.values:
            record = names.of(value) if entity else None
            if record is not None:
                links.add(record)
        return sorted(links.sample(without=key)), links.count(without=key)

    def canonical_values(self, names: _Names) -> Iterator[tuple[str, str]]:
        """The value index's keys, (relation key, value key) with entity values named by their
        record's key; a key may come more than once (two aliases of one record)."""
        for rel, value, entity in self.values:
            yield rel, (names.of(value) or value) if entity else value


def _position(s: dict, arrival: int) -> tuple:
    return (s["source"], s["span"][0], s["relation"], arrival)


def _ranked(position: tuple, rank: tuple) -> tuple:
    return (*position[:3], rank, position[3])


class RecordBuilder:
    """`build_records` over statements added one at a time, for a partition of a corpus
    (data_synthesis/engine/memory_store.py), its records handed out one at a time. With
    `cap`, a hub entity (named in thousands of documents) keeps a stable sample of `cap`
    statements, sources and links (`counts`: the sizes before), chosen by a stable hash, the
    same whatever the input order: a record - and every task that reads it - stays bounded as
    the corpus grows, and so does the builder: a key past 2 x `cap` statements is folded into
    aggregates. Other keys' statements, given as JSON lines, are written to an anonymous
    temporary file (under TMPDIR) and read back by offset when their record is built, so the
    builder holds 24 bytes per statement and what it needs per key; statements given as
    dicts are held. Until 2026-12-05 every statement of a partition was held parsed until
    every record was built, about 2.3 KB of RSS each (1.9 GB for a hub of 800,000
    statements), then its JSON line (about 0.7 KB). The records are what build_records and a
    cap applied afterwards gave."""

    def __init__(self, cap: int = 0, by_source: bool = True):
        self.cap, self.by_source = cap, by_source  # by_source: keys met in order of source
        # key -> (arrival, offset, length) per statement: a line at `offset` of the spill
        # file, or (length -1) the dict self._dicts[offset]
        self._held: dict[str, array] = {}
        self._dicts: list[dict] = []
        self._spill, self._spilled = None, 0
        self._hubs: dict[str, _Group] = {}
        self._first: dict[str, tuple] = {}  # key -> its first statement, as build_records met it
        # (entity, noun, statement's entity if of the same alias key) -> _tally entry of hints
        self._inferred: dict[tuple, list] = {}
        self._said: dict[str, set[str]] = {}  # key -> the nouns of its "is a" statements
        self._arrival = 0
        self.merged_into: dict[str, str] = {}

    def add(self, statement: dict, line: bytes | None = None) -> None:
        """One statement; `line`, its JSON, is written to the spill file instead of holding the
        dict, and parsed again when its record is built."""
        key, arrival = statement["entity"], self._arrival
        self._arrival += 1
        first = (str(statement["source"]), arrival) if self.by_source else (arrival,)
        if key not in self._first or first < self._first[key]:
            self._first[key] = first
        if statement["relation"] == "is a":  # what the key is said to be, for the merges
            self._said.setdefault(key, set()).add(statement["value"]["text"].split()[-1].lower())
        hub = self._hubs.get(key)
        if hub is not None:
            hub.add(_position(statement, arrival), statement)
            return
        held = self._held.setdefault(key, array("q"))
        held.extend((arrival, *self._keep(statement, line)))
        if self.cap and len(held) > 6 * self.cap:  # 2 x cap statements, 3 numbers each
            self._hubs[key] = self._part(key, rank=False)

    def add_hint(self, hint: dict) -> None:
        """A `type_hint` naming one of this partition's entities (any statement's, wherever
        its own entity is partitioned). One whose statement's entity has the same alias key
        keeps it, to be dropped if the two turn out to be one record ("Danube River" said of
        "the Danube"), not if two ("Mount Kenya" said of "Kenya")."""
        target, source = hint["entity"], hint["at"][-1]
        same = source if alias_key(source) == alias_key(target) else ""
        _tally(self._inferred, (target, hint["noun"], same), tuple(hint["at"]))

    def _keep(self, statement: dict, line: bytes | None) -> tuple[int, int]:
        """Where the statement is kept: (offset, length) of its line in the spill file, or
        (index, -1) in the held dicts."""
        if line is None:
            self._dicts.append(statement)
            return len(self._dicts) - 1, -1
        if self._spill is None:
            self._spill = tempfile.TemporaryFile()
        self._spill.write(line)
        self._spilled += len(line)
        return self._spilled - len(line), len(line)

    def _statements(self, held: array) -> Iterator[tuple[int, dict]]:
        if self._spill is not None:
            self._spill.flush()
        for i in range(0, len(held), 3):
            arrival, offset, length = held[i : i + 3]
            if length < 0:
                yield arrival, self._dicts[offset]
                self._dicts[offset] = None  # its record holds it now
            else:
                yield arrival, json.loads(os.pread(self._spill.fileno(), length, offset))

    def _canonical(self) -> _Names:
        """Every key -> the key of the record it merges into: keys that differ only by generic
        type words merge into the one with the most statements that names the same entity
        (`one_entity`), the others into the next such; and each alias key -> the largest
        record's key."""
        counts = {key: len(held) // 3 for key, held in self._held.items()}
        counts |= {key: hub.count for key, hub in self._hubs.items()}
        aliases: dict[str, list[str]] = defaultdict(list)
        for key in counts:
            aliases[alias_key(key)].append(key)
        names = _Names({}, {})
        for alias, keys in aliases.items():
            heads: list[tuple[str, set]] = []
            for key in sorted(keys, key=lambda k: (counts[k], -len(k), k), reverse=True):
                kind = kinds(key, self._said.get(key, set()))
                head = next((h for h, k in heads if one_entity(k, kind)), None)
                if head is None:
                    head = key
                    heads.append((key, kind))
                names.canonical[key] = head
            names.by_alias[alias] = heads[0][0]
        return names

    def records(self, mentions: bool = True) -> Iterator[tuple[dict, set, list[tuple]]]:
        """The records, by key, one at a time, each with what the value index needs of all its
        statements: its (relation key, value key) pairs and its first numeric statement of
        each relation, (relation key, statement) in record order. `mentions`: a record's links
        also name the entities its documents mention. Once: the statements are handed over.
        `merged_into` maps every key added to its record's key."""
        names = self._canonical()
        self.merged_into = names.canonical
        members: dict[str, list[str]] = defaultdict(list)
        for key, target in names.canonical.items():
            members[target].append(key)
        inferred = self._types_of_values(names)
        return self._records(members, names, inferred, mentions)

    def _records(self, members: dict, names: _Names, inferred: dict, mentions: bool) -> Iterator:
        for key in sorted(members):
            parts = [self._part(member) for member in members[key]]
            group = parts[0]
            for part in parts[1:]:
                group.merge(part)
            record = self._record(key, group, names, mentions)
            if record["type"] is None and key in inferred:
                record["type"] = _most_common(inferred[key])
            numeric = sorted(group.numeric.items(), key=lambda item: item[1][0])
            values = group.canonical_values(names)
            yield record, values, [(rel, s) for rel, (_, s) in numeric]

    def _types_of_values(self, names: _Names) -> dict[str, dict]:
        """A type for records without an "X is a Y" statement, from the noun relations whose
        value they are (`type_hint`): (Austria, capital, Vienna) -> Vienna is a "capital";
        (Japan, highest mountain, Mount Fuji) -> a "mountain". Descriptions then read "the
        capital that lies on the Danube". Record key -> noun -> _tally entry, ties to the
        hint met first by (source, span, relation, entity)."""
        inferred: dict[str, dict] = defaultdict(dict)
        for (target, noun, same), (count, first) in self._inferred.items():
            record = names.of(target)
            if record is not None and not (same and names.of(same) == record):
                _tally(inferred[record], noun, first, count)
        return inferred

    def _part(self, key: str, rank: bool = True) -> _Group:
        """Key `key`'s statements as a group, ranked among a record's keys."""
        part = self._hubs.pop(key, None)
        if part is None:
            part = _Group(self.cap)
            for arrival, statement in self._statements(self._held.pop(key)):
                part.add(_position(statement, arrival), statement)
        if rank:
            part.rank(self._first[key])
        return part

    def _record(self, key: str, group: _Group, names: _Names, mentions: bool) -> dict:
        statements = group.statements()
        for s in [*statements, *(s for _, s in group.numeric.values())]:
            s["entity"] = key
            if s["value"].get("entity"):
                s["value"]["entity"] = names.of(s["value"]["entity"]) or s["value"]["entity"]
        links, link_count = group.links(key, names, mentions)
        record = {
            "id": key,
            "entity": key,
            "entity_name": _most_common(group.names),
            "names": sorted(group.names),
            "type": _most_common(group.types),
            "statements": statements,
            "sources": sorted(group.sources.sample()),  # all of them unless capped
            "links": links,
        }
        counts = {"statements": group.count, "sources": group.sources.count(), "links": link_count}
        if self.cap and max(counts.values()) > self.cap:
            record["counts"] = counts  # the sizes before sampling
        return record


_TENSE = {"was": "is", "were": "is", "are": "is", "been": "is", "had": "has", "have": "has"}


def relation_key(relation: str) -> str:
    """Relations compared across tenses: "was founded in" == "is founded in"."""
    return " ".join(_TENSE.get(w, w) for w in normalise(relation).split())


def value_key(value: dict) -> str:
    """How a value is compared across entities: the number for numbers and dates, the entity key
    for entities, the normalised text otherwise."""
    if value.get("number") is not None:
        return f"{value['number']:g}"
    return value.get("entity") or normalise(value.get("text", ""))


def value_index(records: list[dict]) -> dict[tuple[str, str], list[str]]:
    """(relation key, value key) -> entities with such a statement (sorted)."""
    index: dict[tuple[str, str], set] = defaultdict(set)
    for record in records:
        for s in record["statements"]:
            index[(relation_key(s["relation"]), value_key(s["value"]))].add(record["entity"])
    return {k: sorted(v) for k, v in index.items()}


class InMemoryView:
    """MemoryView over records held in memory (small runs, tests; the engine's partitioned store
    answers the same calls at scale)."""

    def __init__(self, records: list[dict]):
        self.records = {r["entity"]: r for r in records}
        self.index = value_index(records)
        self.numeric: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        for entity in sorted(self.records):
            seen = set()
            for s in self.records[entity]["statements"]:
                key = relation_key(s["relation"])
                if s["value"].get("number") is not None and key not in seen:
                    seen.add(key)
                    self.numeric[key].append((entity, s))

    def get(self, entity: str) -> dict | None:
        return self.records.get(entity)

    def keys(self) -> list[str]:
        return sorted(self.records)

    def links(self, entity: str) -> list[str]:
        record = self.records.get(entity)
        return record["links"] if record else []

    def find(self, relation: str, value: dict) -> list[str]:
        return self.index.get((relation_key(relation), value_key(value)), [])

    def count(self, relation: str, value: dict) -> int:
        return len(self.find(relation, value))

    def has(self, entity: str, relation: str, value: dict) -> bool:
        found = self.find(relation, value)
        at = bisect.bisect_left(found, entity)
        return at < len(found) and found[at] == entity

    def peers(self, relation: str, entity_type: str | None, limit: int = 50) -> list[dict]:
        out = []
        for entity, statement in self.numeric.get(relation_key(relation), []):
            if entity_type and self.records[entity].get("type") != entity_type:
                continue
            out.append({"entity": entity, "statement": statement})
            if len(out) >= limit:
                break
        return out


# --- the stage methods ------------------------------------------------------------------------


class HeuristicExtractor:
    """Heuristic baseline: generic sentence-level extraction (no LLM)."""

    name = STAGE

    def run(self, items: list[dict], ctx) -> list[dict]:
        out = []
        for doc in items:
            found = heuristic_statements(doc)
            ctx.counters.add(STAGE, "documents", 1)
            ctx.counters.add(STAGE, "statements", len(found))
            if not found:
                ctx.counters.reject(STAGE, "document without statements")
            out += _with_ids(found)
        return out


def _with_ids(statements: list[dict]) -> list[dict]:
    counts: Counter = Counter()
    for s in statements:
        base = f"{s['source']}@{s['span'][0]}"
        s["id"] = f"{base}#{counts[base]}"
        counts[base] += 1
    return statements


VALUE_TYPES = ["entity", "number", "date", "text"]
NULLABLE = {"type": ["string", "null"]}
SCHEMA = object_schema(
    {
        "statements": {
            "type": "array",
            "maxItems": 24,
            "items": object_schema(
                {
                    "entity": STRING,
                    "relation": STRING,
                    "value": STRING,
                    "value_type": {"enum": VALUE_TYPES},
                    "unit": NULLABLE,
                    "time": NULLABLE,
                    "sentence": STRING,
                }
            ),
        }
    }
)


def _check(obj: dict) -> None:
    require(obj, statements=list)
    for item in obj["statements"]:
        if not isinstance(item, dict):
            from data_synthesis.llm.json_task import SchemaError

            raise SchemaError("schema: a statement is not an object")
        require(item, entity=str, relation=str, value=str, sentence=str)


def chunks(doc: dict) -> list[tuple[int, str]]:
    """(offset, text) pieces of a document of about CHUNK_CHARS, cut between sentences."""
    text, out, start, end = doc["text"], [], None, None
    for s, e in sentences(text):
        if start is None:
            start = s
        elif e - start > CHUNK_CHARS:
            out.append((start, text[start:end]))
            start = s
        end = e
    if start is not None:
        out.append((start, text[start:end]))
    return out


class LLMExtractor:
    """The method: the LLM lists each chunk's statements; each is grounded and typed."""

    name = STAGE
    prompt = "memory_v2"

    def run(self, items: list[dict], ctx) -> list[dict]:
        template = load_prompt(self.prompt)
        jobs = [(doc, offset, piece) for doc in items for offset, piece in chunks(doc)]
        prompts = [
            template.messages(title=doc.get("title") or "(none)", text=piece)
            for doc, _, piece in jobs
        ]
        parsed = run_json_task(
            ctx.llm,
            prompts,
            SCHEMA,
            _check,
            seed=ctx.seed,
            retries=ctx.config.backend.max_retries,
            counters=ctx.counters,
            stage=STAGE,
        )
        per_doc: dict[str, list[dict]] = defaultdict(list)
        for (doc, offset, piece), obj in zip(jobs, parsed):
            for item in (obj or {}).get("statements", []):
                statement = self._ground(item, doc, offset, piece, ctx)
                if statement:
                    per_doc[doc["id"]].append(statement)
        out = []
        for doc in items:
            found = per_doc.get(doc["id"], [])
            ctx.counters.add(STAGE, "documents", 1)
            ctx.counters.add(STAGE, "statements", len(found))
            if not found:
                ctx.counters.reject(STAGE, "document without statements")
            out += _with_ids(found)
        return out

    def _ground(self, item: dict, doc: dict, offset: int, piece: str, ctx) -> dict | None:
        """A statement record when the model's claim is in the text, else None (counted)."""
        span = _find_sentence(item["sentence"], doc["text"], offset, piece)
        if span is None:
            ctx.counters.reject(STAGE, "statement sentence not in the document")
            return None
        sentence = doc["text"][span[0] : span[1]]
        if not value_in_text(item["value"], sentence):
            ctx.counters.reject(STAGE, "statement value not in its sentence")
            return None
        if not entity_key(item["entity"]):
            ctx.counters.reject(STAGE, "statement without an entity")
            return None
        time = item.get("time") or None
        record = _statement(
            item["entity"],
            item["relation"].strip(),
            item["value"],
            sentence,
            span,
            doc,
            time,
            "llm",
        )
        if record is None:
            ctx.counters.reject(STAGE, "statement without a usable value")
            return None
        declared = item.get("value_type")
        if declared in ("number", "date") and record["value"]["type"] != declared:
            ctx.counters.add(
                STAGE, f"value typed {record['value']['type']} (model said {declared})"
            )
        if declared == "entity" and record["value"]["type"] == "text":
            value = record["value"]
            value.update(type="entity", entity=entity_key(value["text"]))
        if item.get("unit") and record["value"]["type"] == "number" and not record["value"]["unit"]:
            record["value"]["unit"] = item["unit"]
        return record


def _find_sentence(claimed: str, text: str, offset: int, piece: str) -> tuple[int, int] | None:
    """The span of the document sentence the model quoted (exact, or by normalised words)."""
    claimed = claimed.strip()
    at = piece.find(claimed)
    spans = [(s + offset, e + offset) for s, e in sentences(piece)]
    if at >= 0 and claimed:
        for s, e in spans:
            if s <= at + offset < e:
                return s, e
    want = normalise(claimed)
    for s, e in spans:
        have = normalise(text[s:e])
        if want and (want == have or (len(want) > 20 and want in have)):
            return s, e
    return None


def count_multi_source(records: list[dict]) -> int:
    """How many records combine statements from two or more documents."""
    return sum(1 for r in records if r.get("counts", {}).get("sources", len(r["sources"])) >= 2)


__all__ = [
    "HeuristicExtractor",
    "InMemoryView",
    "LLMExtractor",
    "RecordBuilder",
    "build_records",
    "count_multi_source",
    "entity_key",
    "fold",
    "heuristic_statements",
    "value_index",
]

_alias_key = alias_key  # the engine's partitioner name
