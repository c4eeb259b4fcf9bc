"""Open-world memory: raw documents -> entity-anchored statements with provenance.

Per document (`extract_document`): split into sentences (statements), each keeping its source
document, position, url and date; find the entities each statement mentions; and extract facts
(subject, relation, value) with rule-based patterns (the CPU default) or with the LLM backend.
Then `build_memory` groups statements by entity into records:

    {"stage": "memory", "entity": "Vienna", "type": "city", "statements": [...],
     "facts": [{"relation": "river", "value": "Danube", "statement": "doc-0057#2"}, ...],
     "neighbours": ["Austria", "Danube", ...], "text": "..."}

Facts whose value is itself an entity are the links later stages walk for multi-hop chains
(entity -> statement -> entity).
"""

from __future__ import annotations

import re
from collections import defaultdict

# Relation patterns over one sentence whose subject is the document's entity. Each yields
# (relation, value, kind): kind "entity"/"text" values are names, "number"/"year" are numeric.
_NUM = r"(?P<v>\d[\d,]*(?:\.\d+)?(?: (?:million|billion))?)"
_YEAR = r"(?P<y>\d{3,4}(?: BC)?)"
_NAME = r"(?:the )?(?P<o>[A-Z][^.,;]*?(?:, D\.C\.)?)"
PATTERNS: list[tuple[str, re.Pattern, str]] = [
    (rel, re.compile(rx), kind)
    for rel, rx, kind in [
        ("capital", rf"^The capital of (?:the )?.+? is {_NAME}\.$", "entity"),
        ("country", rf"^.+? is the capital of {_NAME}\.$", "entity"),
        ("continent", rf"is a country in {_NAME}\.$", "entity"),
        ("population", rf"has a population of about {_NUM}", "number"),
        ("area", rf"has an area of {_NUM} square kilometres", "number"),
        ("currency", r"^The currency of (?:the )?.+? is the (?P<o>[^.]+)\.$", "text"),
        ("language", r"^The official language of (?:the )?.+? is (?P<o>[^.]+)\.$", "text"),
        ("river", rf"lies on the {_NAME}\.$", "entity"),
        ("length", rf"is a river about {_NUM} kilometres long", "number"),
        ("mouth", rf"flows into {_NAME}\.$", "entity"),
        ("height", rf"is a mountain {_NUM} metres high", "number"),
        ("range", rf"is in the {_NAME}\.$", "entity"),
        ("location", rf"is located in {_NAME}\.$", "entity"),
        ("first_ascent_year", rf"first ascent of .+? was made in {_YEAR}", "year"),
        ("birthplace", rf"was born in {_NAME} in \d", "entity"),
        ("birth_year", rf"was born in .+? in {_YEAR}\.", "year"),
        ("workplace", rf"worked at {_NAME}\.$", "entity"),
        ("founded_year", rf"was founded in {_YEAR}", "year"),
        ("founding_city", rf"was founded in \d+(?: by .+?)? in {_NAME}\.$", "entity"),
        ("founders", r"was founded in \d+ by (?P<o>.+?) in ", "text"),
        ("headquarters", rf"is headquartered in {_NAME}\.$", "entity"),
        ("atomic_number", r"atomic number (?P<v>\d+)", "number"),
        ("symbol", r"with the symbol (?P<o>[A-Z][a-z]?) ", "text"),
        ("discoverer", r"was discovered by (?P<o>.+?) in \d", "entity"),
        ("discovery_year", rf"was discovered by .+? in {_YEAR}\.", "year"),
        ("diameter", rf"has a diameter of about {_NUM} kilometres", "number"),
        ("moons", r"has (?P<v>\d+) known moons?\.", "number"),
        ("planet", rf"is a moon of {_NAME}\.$", "entity"),
        ("inventor", r"was invented in \d+ by (?P<o>.+?)\.$", "entity"),
        ("invention_year", rf"was invented in {_YEAR}", "year"),
        ("host_city", r"were held in (?P<o>[^,]+),", "entity"),
        ("host", rf"World Cup was held in {_NAME}\.$", "entity"),
        ("winner", rf"was won by {_NAME}\.$", "entity"),
        ("author", r"is a work by (?P<o>[^,]+), published", "entity"),
        ("publication_year", rf"published in {_YEAR}\.", "year"),
        ("death_place", rf"died in {_NAME} in \d", "entity"),
        ("death_year", rf"died in .+? in {_YEAR}\.", "year"),
    ]
]
TYPE_PATTERN = re.compile(
    r"(?:is|was) (?:a|the) (?P<t>country|capital|river|mountain|scientist|chemical element|planet|moon|"
    r"company|composer|work)\b"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PRONOUNS = ("He ", "She ", "It ", "They ")


def split_sentences(text: str) -> list[str]:
    """Sentences of a plain-text document (abbreviations like "D.C." stay whole)."""
    parts = _SENTENCE_END.split(text.strip())
    merged: list[str] = []
    for part in parts:
        if merged and re.search(r"\b[A-Z]\.[A-Z]\.$", merged[-1]):
            merged[-1] += " " + part
        else:
            merged.append(part)
    return [p for p in merged if p]


def surface_name(entity: str) -> str:
    """How text names an entity: its title without a disambiguation suffix ("Amazon (river)")."""
    return re.sub(r" \([^)]*\)$", "", entity).strip()


def extract_document(doc: dict, known_entities: list[str]) -> dict:
    """Rule-based extraction of one document's statements, mentions and facts."""
    anchor = doc.get("title") or doc["id"]
    statements = []
    for position, sentence in enumerate(split_sentences(doc["text"])):
        subject = anchor if _is_about(sentence, surface_name(anchor)) else None
        facts = _facts(sentence) if subject else []
        statements.append(
            {
                "id": f"{doc['id']}#{position}",
                "text": sentence,
                "source": doc["id"],
                "position": position,
                "url": doc.get("url"),
                "time": doc.get("date"),
                "subject": subject,
                "mentions": _mentions(sentence, known_entities),
                "facts": facts,
            }
        )
    kind = TYPE_PATTERN.search(doc["text"])
    return {
        "stage": "memory_extraction",
        "id": doc["id"],
        "entity": anchor,
        "type": kind.group("t") if kind else None,
        "statements": statements,
        "extractor": "rules-v1",
    }


def _is_about(sentence: str, name: str) -> bool:
    """The sentence's subject is the document's entity (by name, pronoun, or "the X of <name>")."""
    stripped = (sentence[4:] if sentence.startswith("The ") else sentence).lower()
    if stripped.startswith(name.lower()) or sentence.startswith(_PRONOUNS):
        return True
    return bool(
        re.match(
            rf"^(?:The )?(capital|currency|official language|first ascent) of "
            rf"(?:the )?{re.escape(name)}\b",
            sentence,
        )
    )


def _facts(sentence: str) -> list[dict]:
    facts = []
    for relation, pattern, kind in PATTERNS:
        found = pattern.search(sentence)
        if not found:
            continue
        groups = found.groupdict()
        value = (groups.get("o") or groups.get("v") or groups.get("y") or "").strip()
        if value:
            facts.append({"relation": relation, "value": value, "kind": kind})
    return facts


def _mentions(sentence: str, known_entities: list[str]) -> list[str]:
    return [
        entity
        for entity in known_entities
        if re.search(rf"(?<![\w-]){re.escape(surface_name(entity))}(?![\w-])", sentence)
    ]


def build_memory(extractions: list[dict]) -> list[dict]:
    """Entity records from per-document extractions; links between entities come from facts
    whose values name another entity and from co-mentions."""
    records: dict[str, dict] = {}
    for doc in extractions:
        record = records.setdefault(
            doc["entity"],
            {
                "stage": "memory",
                "entity": doc["entity"],
                "type": doc["type"],
                "statements": [],
                "facts": [],
                "sources": [],
                "extractor": doc["extractor"],
            },
        )
        record["sources"].append(doc["id"])
        for statement in doc["statements"]:
            record["statements"].append(
                {
                    k: statement[k]
                    for k in ("id", "text", "source", "position", "url", "time", "mentions")
                }
            )
            for fact in statement["facts"]:
                record["facts"].append({**fact, "statement": statement["id"]})
    surface: dict[str, list[str]] = defaultdict(list)
    for name in records:
        surface[surface_name(name)].append(name)
    neighbours: dict[str, set] = defaultdict(set)
    for name, record in records.items():
        for fact in record["facts"]:
            targets = surface.get(fact["value"], []) if fact["kind"] == "entity" else []
            if len(targets) == 1:  # the value names exactly one known entity: a link
                fact["target"] = targets[0]
                neighbours[name].add(targets[0])
                neighbours[targets[0]].add(name)
        for statement in record["statements"]:
            neighbours[name].update(m for m in statement["mentions"] if m != name)
    for name, record in records.items():
        record["neighbours"] = sorted(neighbours[name])
        record["text"] = f"{name}: " + " ".join(s["text"] for s in record["statements"])
        record["id"] = name
    return [records[name] for name in sorted(records)]
