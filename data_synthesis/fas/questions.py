"""FAS question synthesis from the open-world memory.

For an anchor entity, questions of several styles, each with its gold answer and the memory
statements it needs:
- factual: one fact ("What is the height of Matterhorn, in metres?");
- multi_hop: 2-4 hops along entity links ("What is the length, in kilometres, of the river on
  which the capital of Austria lies?");
- numeric: arithmetic over two facts ("How many metres higher is K2 than Matterhorn?");
- comparison: aggregation over several entities ("Which is the longest: Danube, Rhine or Elbe?");
- obfuscated: the entity described by its attributes instead of named ("... the country whose
  currency is the forint and whose capital is Budapest").
Template generation (CPU default) composes these from facts; with an LLM backend the template
question is rewritten in a freer style (`question_v1` prompt) keeping its answer.
"""

from __future__ import annotations

import random
import re

# relation -> (noun for questions, noun phrase with {s}, unit)
RELATIONS = {
    "capital": ("capital", "the capital of {s}", None),
    "country": ("country", "the country whose capital is {s}", None),
    "continent": ("continent", "the continent of {s}", None),
    "population": ("population", "the population of {s}", None),
    "area": ("area", "the area of {s}", "square kilometres"),
    "currency": ("currency", "the currency of {s}", None),
    "language": ("official language", "the official language of {s}", None),
    "river": ("river", "the river on which {s} lies", None),
    "length": ("length", "the length of {s}", "kilometres"),
    "mouth": ("mouth", "the body of water into which {s} flows", None),
    "height": ("height", "the height of {s}", "metres"),
    "range": ("mountain range", "the mountain range of {s}", None),
    "first_ascent_year": ("year of first ascent", "the year of the first ascent of {s}", None),
    "birthplace": ("birthplace", "the birthplace of {s}", None),
    "birth_year": ("year of birth", "the year of birth of {s}", None),
    "workplace": ("workplace", "the institution where {s} worked", None),
    "founded_year": ("founding year", "the founding year of {s}", None),
    "founding_city": ("founding city", "the city where {s} was founded", None),
    "headquarters": ("headquarters", "the headquarters city of {s}", None),
    "atomic_number": ("atomic number", "the atomic number of {s}", None),
    "discoverer": ("discoverer", "the discoverer of {s}", None),
    "discovery_year": ("year of discovery", "the year of discovery of {s}", None),
    "diameter": ("diameter", "the diameter of {s}", "kilometres"),
    "moons": ("number of known moons", "the number of known moons of {s}", None),
    "planet": ("planet", "the planet that {s} orbits", None),
    "host_city": ("host city", "the host city of {s}", None),
    "host": ("host country", "the host country of {s}", None),
    "winner": ("winner", "the winner of {s}", None),
    "author": ("author", "the author of {s}", None),
    "publication_year": ("year of publication", "the year of publication of {s}", None),
    "death_place": ("place of death", "the place of death of {s}", None),
    "inventor": ("inventor", "the inventor of {s}", None),
    "invention_year": ("year of invention", "the year of invention of {s}", None),
}
# Relations that can describe an entity in an obfuscated question: "whose <noun> is <value>".
DESCRIBING = (
    "capital",
    "currency",
    "language",
    "river",
    "continent",
    "height",
    "length",
    "birthplace",
    "birth_year",
    "founded_year",
    "atomic_number",
    "author",
    "winner",
    "host_city",
)
NUMERIC_KINDS = ("number", "year")


def parse_number(text: str) -> float | None:
    """'2,850' -> 2850; '2.1 million' -> 2100000; '753 BC' -> -753; otherwise None."""
    found = re.fullmatch(r"(\d[\d,]*(?:\.\d+)?)(?: (million|billion))?( BC)?", text.strip())
    if not found:
        return None
    value = float(found.group(1).replace(",", ""))
    value *= {"million": 1e6, "billion": 1e9, None: 1}[found.group(2)]
    return -value if found.group(3) else value


def format_number(value: float) -> str:
    return f"{int(round(value)):,}" if abs(value - round(value)) < 1e-9 else f"{value:,.2f}"


class QuestionMaker:
    """Builds questions around one anchor entity from the whole memory."""

    def __init__(self, memory: dict[str, dict], max_hops: int):
        self.memory = memory
        self.max_hops = max_hops

    def facts(self, entity: str) -> list[dict]:
        return [f for f in self.memory[entity]["facts"] if f["relation"] in RELATIONS]

    def peers(self, anchor: str, relation: str) -> list[tuple[str, dict]]:
        """Other entities of the anchor's type with a numeric fact of the same relation."""
        kind = self.memory[anchor].get("type")
        return [
            (e, f)
            for e in sorted(self.memory)
            if e != anchor and self.memory[e].get("type") == kind
            for f in self.facts(e)
            if f["relation"] == relation and parse_number(f["value"]) is not None
        ]

    def make(self, style: str, anchor: str, rng: random.Random) -> dict | None:
        return getattr(self, f"_{style}")(anchor, rng)

    # Each builder returns {question, answer, records, style} or None when the memory lacks
    # what the style needs around this anchor.

    def _factual(self, anchor, rng):
        facts = self.facts(anchor)
        if not facts:
            return None
        fact = rng.choice(facts)
        return _question(
            "factual",
            f"What is {_np(fact['relation'], anchor)}{_unit(fact)}?",
            fact["value"],
            [fact["statement"]],
        )

    def _multi_hop(self, anchor, rng):
        chain, entity, visited = [], anchor, {anchor}
        hops = rng.randint(2, self.max_hops)
        for _ in range(hops - 1):
            links = [
                f
                for f in self.facts(entity)
                if f.get("target") in self.memory and f["target"] not in visited
            ]
            if not links:
                break
            link = rng.choice(links)
            chain.append(link)
            entity = link["target"]
            visited.add(entity)
        if not chain:
            return None
        final = [f for f in self.facts(entity) if f.get("target") not in visited]
        if not final:
            return None
        last = rng.choice(final)
        phrase = anchor
        for link in chain:
            phrase = RELATIONS[link["relation"]][1].format(s=phrase)
        question = f"What is {_np(last['relation'], phrase)}{_unit(last)}?"
        records = [link["statement"] for link in chain] + [last["statement"]]
        return _question("multi_hop", question, last["value"], records, hops=len(chain) + 1)

    def _numeric(self, anchor, rng):
        numeric = [
            f
            for f in self.facts(anchor)
            if parse_number(f["value"]) is not None and f["kind"] in NUMERIC_KINDS
        ]
        if not numeric:
            return None
        fact = rng.choice(numeric)
        others = self.peers(anchor, fact["relation"])
        if not others:
            return None
        other, other_fact = rng.choice(others)
        a, b = parse_number(fact["value"]), parse_number(other_fact["value"])
        noun = RELATIONS[fact["relation"]][0]
        if fact["kind"] == "year":
            question = (
                f"How many years lie between {_np(fact['relation'], anchor)} and "
                f"{_np(fact['relation'], other)}?"
            )
            answer = abs(a - b)
        elif rng.random() < 0.5:
            question = (
                f"What is the difference between the {noun} of {anchor} and the {noun} "
                f"of {other}{_unit(fact)}?"
            )
            answer = abs(a - b)
        else:
            question = (
                f"What is the sum of the {noun} of {anchor} and the {noun} of {other}{_unit(fact)}?"
            )
            answer = a + b
        return _question(
            "numeric",
            question,
            format_number(answer),
            [fact["statement"], other_fact["statement"]],
            operands=[a, b],
        )

    def _comparison(self, anchor, rng):
        numeric = [
            f
            for f in self.facts(anchor)
            if f["kind"] == "number" and parse_number(f["value"]) is not None
        ]
        if not numeric:
            return None
        fact = rng.choice(numeric)
        peers = self.peers(anchor, fact["relation"])
        if len(peers) < 2:
            return None
        group = [(anchor, fact)] + rng.sample(peers, min(len(peers), rng.randint(2, 3)))
        values = [parse_number(f["value"]) for _, f in group]
        if len(set(values)) < len(values):
            return None
        rng.shuffle(group)
        largest = rng.random() < 0.5
        pick = max if largest else min
        winner = pick(group, key=lambda ef: parse_number(ef[1]["value"]))[0]
        names = [e for e, _ in group]
        question = (
            f"Which of {', '.join(names[:-1])} and {names[-1]} has the "
            f"{'largest' if largest else 'smallest'} {RELATIONS[fact['relation']][0]}?"
        )
        return _question("comparison", question, winner, [f["statement"] for _, f in group])

    def _obfuscated(self, anchor, rng):
        facts = self.facts(anchor)
        describing = [f for f in facts if f["relation"] in DESCRIBING]
        if len(describing) < 2:
            return None
        clues = rng.sample(describing, 2)
        targets = [f for f in facts if f not in clues]
        if not targets:
            return None
        target = rng.choice(targets)
        kind = self.memory[anchor].get("type") or "entity"
        description = f"the {kind} whose " + " and whose ".join(
            f"{RELATIONS[c['relation']][0]} is {c['value']}" for c in clues
        )
        question = f"What is {_np(target['relation'], description)}{_unit(target)}?"
        if anchor.lower() in question.lower():
            return None
        return _question(
            "obfuscated",
            question,
            target["value"],
            [c["statement"] for c in clues] + [target["statement"]],
        )


def _np(relation: str, subject: str) -> str:
    return RELATIONS[relation][1].format(s=subject)


def _unit(fact: dict) -> str:
    unit = RELATIONS[fact["relation"]][2]
    return f", in {unit}" if unit else ""


def _question(style, question, answer, records, **extra) -> dict:
    return {"style": style, "question": question, "answer": answer, "records": records, **extra}
