"""FAS questions: composed from groups of memory statements, checked before they are kept.

For each anchor entity (an input record of the memory) the stage picks groups of statements, one
per style of the paper:
- factual: one statement of the anchor;
- numeric: two numbers of the same relation and unit (anchor and a peer): their difference;
- temporal: two dates (anchor and a peer): the years between them;
- comparison: the same numeric relation over 2-3 entities: which is largest/smallest;
- multi_hop: a chain through a linked entity (anchor -> value entity -> its statement);
- obfuscated: the anchor described by two of its statements (never named), asked a third.
The gold answer is computed from the statements (a value, a difference, a winner), never left to
the writer. `LLMQuestions` (the method) has the model write each question from its group and the
gold answer (schema-constrained JSON); `HeuristicQuestions` (the baseline) writes them with
English grammar rules (do-support, inversion, relative clauses) over the open relation names.

Every question passes `reject_reason` before it is kept: the answer (normalised, any number
format) is not in it; an obfuscated question names neither its entity nor, for multi-hop, the
hidden intermediate; the description picks out exactly one entity in memory; the gold answer
and its supporting statements are stored with it. Rejections are counted by reason.
"""

from __future__ import annotations

import re

from data_synthesis.answers import answer_in_text, answers_match, name_in_text
from data_synthesis.llm.json_task import STRING, load_prompt, object_schema, require, run_json_task
from data_synthesis.memory import (
    AUX,
    PREPS,
    _adverb,
    _inflection,
    _lemmas,
    _verb_lemma,
    relation_key,
)

STAGE = "questions"
STYLES = ("factual", "numeric", "temporal", "comparison", "multi_hop", "obfuscated")
MAX_VALUE_WORDS = 8

# --- statement helpers ------------------------------------------------------------------------


def is_noun_relation(relation: str) -> bool:
    """ "capital", "number of known moons" (a property) vs "lies on", "was founded in" (a verb)."""
    first = relation.split()[0].lower()
    return first not in AUX and _verb_lemma(first) is None


def askable(statement: dict) -> bool:
    """A statement with a short value that a question can ask for."""
    value = statement["value"]
    return (
        relation_key(statement["relation"]) not in ("is a", "is", "has")
        and len(value["text"].split()) <= MAX_VALUE_WORDS
        and value["type"] in ("entity", "number", "date", "text")
    )


def _subject(statement: dict) -> str:
    return statement["entity_name"]


def _year(statement: dict) -> int | None:
    value = statement["value"]
    return int(value["number"]) if value["type"] == "date" and value["number"] else None


def _format(number: float) -> str:
    return f"{int(round(number)):,}" if abs(number - round(number)) < 1e-9 else f"{number:,.2f}"


# --- grammar (heuristic baseline) -------------------------------------------------------------


def _split_verb(relation: str) -> tuple[list[str], list[str], str | None]:
    """("was founded in") -> (["was"], ["founded"], "in"); ("lies on") -> ([], ["lies"], "on")."""
    words = relation.split()
    prep = words.pop() if len(words) > 1 and words[-1] in PREPS else None
    aux = []
    while words and words[0] in AUX and len(words) > 1:
        aux.append(words.pop(0))
    return aux, words, prep


def _base(verb: str) -> tuple[str, str]:
    """(do-form, base) of a finite verb: "lies" -> ("does", "lie"); "died" -> ("did", "die")."""
    lemma = _lemmas(verb).get("VERB", (verb,))[0]
    past = verb in _inflection(lemma, "VBD") and verb != lemma
    return ("did" if past else "does" if verb != lemma else "do"), lemma


def _passive(aux: list[str], verbs: list[str]) -> bool:
    """ "are identified", "can be supplied": a verb group with no object, whose value says how
    or where."""
    return bool(verbs) and not {"is", "are", "was", "were", "be", "been"}.isdisjoint(aux)


def _manner(value: str) -> bool:
    """A passive's value that says how, not what: "(are identified) separately from stable
    releases", "(are generated) using 477 files", "(can be supplied) either as arguments or
    through standard input"."""
    first = (value.split() or [""])[0].lower()
    return first in ("using", "either") or (first.endswith("ly") and _adverb(first))


# verbs whose "in" names a language or a unit, not a place: "is written in C" asks "What"
_MEDIUM = {"written", "implemented", "coded", "expressed", "measured", "encoded"}


def ask(subject: str, statement: dict) -> str | None:
    """A wh-question asking for the statement's value about `subject` (a name or a
    description): "What is the capital of France?", "When was Google founded?", "What does
    Vienna lie on?"."""
    relation, kind = statement["relation"], statement["value"]["type"]
    if is_noun_relation(relation):
        unit = statement["value"].get("unit")
        suffix = f", in {unit}" if kind == "number" and unit else ""
        if subject == "it":
            return f"What is its {relation}{suffix}?"
        return f"What is the {relation} of {subject}{suffix}?"
    aux, verbs, prep = _split_verb(relation)
    if not aux and verbs in (["is"], ["are"], ["was"], ["were"]):
        aux, verbs = verbs, []  # "is via": "What is X via?", not "What does X be via?"
    if not verbs and not aux:
        return None
    wh = (
        "When"
        if kind == "date"
        else "Where"
        if prep in ("in", "at") and kind == "entity" and not _MEDIUM & set(verbs)
        else "How"
        if not prep and _passive(aux, verbs) and _manner(statement["value"]["text"])
        else "What"
    )
    tail = "" if wh != "What" or not prep else f" {prep}"
    if aux:
        first = aux[0]
        if subject == "it" or subject.startswith("the one "):  # a singular description
            first = {"are": "is", "were": "was", "have": "has"}.get(first, first)
        return f"{wh} {' '.join([first, subject, *aux[1:], *verbs])}{tail}?"
    do, base = _base(verbs[0])
    rest = " ".join([base, *verbs[1:]])
    return f"{wh} {do} {subject} {rest}{tail}?"


def describe_value(statement: dict, memory) -> str:
    """A phrase naming a statement's value through its subject: "the capital of Austria",
    "the river that Vienna lies on"."""
    relation = statement["relation"]
    if is_noun_relation(relation):
        return f"the {relation} of {_subject(statement)}"
    target = memory.get(statement["value"].get("entity") or "") if memory else None
    noun = (target or {}).get("type") or "one"
    inverse = re.fullmatch(r"(?:is|was) (?:the|a|an) (.+) of", relation)
    if inverse:  # (Vienna, "is the capital of", Austria) -> "the one whose capital is Vienna"
        return f"the {noun} whose {inverse.group(1)} is {_subject(statement)}"
    return f"the {noun} that {_subject(statement)} {relation}"


def describe_subject(clues: list[dict], kind: str | None) -> str:
    """The anchor described by its statements: "the city that lies on the Danube and whose
    population is about 1.9 million"."""
    parts = []
    for clue in clues:
        value = clue["value"]["text"]
        if is_noun_relation(clue["relation"]):
            parts.append(f"whose {clue['relation']} is {value}")
        else:
            parts.append(f"that {clue['relation']} {value}")
    return f"the {kind or 'entity'} " + " and ".join(parts)


# --- groups of statements per style -----------------------------------------------------------


def groups_for(anchor: dict, memory, rng, styles) -> list[dict]:
    """One group per style that the memory supports around this anchor: the statements, the
    gold answer and what the question must do ("spec")."""
    out = []
    for style in styles:
        group = GROUPERS[style](anchor, memory, rng)
        if group:
            out.append({"style": style, **group})
    return out


def _askable(anchor: dict) -> list[dict]:
    return [s for s in anchor["statements"] if askable(s)]


def _factual(anchor, memory, rng):
    pool = _askable(anchor)
    if not pool:
        return None
    s = rng.choice(pool)
    return {"supporting": [s], "answer": s["value"]["text"], "target": s}


def _numeric_pair(anchor, memory, rng, kind):
    own = [
        s
        for s in anchor["statements"]
        if s["value"]["type"] == kind and s["value"]["number"] is not None
    ]
    rng.shuffle(own)
    for s in own:
        peers = [
            p["statement"]
            for p in memory.peers(s["relation"], anchor.get("type"), limit=20)
            if p["entity"] != anchor["entity"]
            and p["statement"]["value"]["type"] == kind
            and (p["statement"]["value"].get("unit") or None) == (s["value"].get("unit") or None)
            and p["statement"]["value"]["number"] != s["value"]["number"]
        ]
        if peers:
            return s, rng.choice(peers), peers
    return None


def _numeric(anchor, memory, rng):
    found = _numeric_pair(anchor, memory, rng, "number")
    if not found:
        return None
    a, b, _ = found
    diff = abs(a["value"]["number"] - b["value"]["number"])
    unit = a["value"].get("unit")
    answer = _format(diff) + (f" {unit}" if unit else "")
    return {"supporting": [a, b], "answer": answer, "operation": "difference"}


def _temporal(anchor, memory, rng):
    found = _numeric_pair(anchor, memory, rng, "date")
    if not found:
        return None
    a, b, _ = found
    years = abs(_year(a) - _year(b))
    return {"supporting": [a, b], "answer": f"{years} years", "operation": "years between"}


def _comparison(anchor, memory, rng):
    found = _numeric_pair(anchor, memory, rng, "number")
    if not found:
        return None
    a, _, peers = found
    group = [a] + rng.sample(peers, min(len(peers), rng.randint(1, 2)))
    values = [s["value"]["number"] for s in group]
    if len(set(values)) < len(values) or len({s["entity"] for s in group}) < len(group):
        return None
    largest = rng.random() < 0.5
    pick = (max if largest else min)(group, key=lambda s: s["value"]["number"])
    rng.shuffle(group)
    return {
        "supporting": group,
        "answer": pick["entity_name"],
        "operation": "largest" if largest else "smallest",
    }


def _multi_hop(anchor, memory, rng):
    links = [s for s in anchor["statements"] if s["value"]["type"] == "entity" and askable(s)]
    rng.shuffle(links)
    for first in links:
        target = memory.get(first["value"]["entity"])
        if not target or target["entity"] == anchor["entity"]:
            continue
        hidden = {anchor["entity"], target["entity"]}
        final = _random_passing(
            target["statements"],
            rng,
            lambda s, hidden=hidden, first=first: (
                askable(s)
                and s["value"].get("entity") not in hidden
                and not answer_in_text(s["value"]["text"], first["sentence"])
            ),
        )
        if final:
            return {
                "supporting": [first, final],
                "answer": final["value"]["text"],
                "target": final,
                "hidden": target,
            }
    return None


def _random_passing(items: list, rng, ok):
    """A random item that passes `ok` (uniform over those that do), None when none does.
    Items are tried in a lazily shuffled order, so a hub's hundreds of statements are not all
    checked when an early one passes: the same entity is a link target of many anchors."""
    order = list(range(len(items)))
    for i in range(len(order)):
        j = rng.randrange(i, len(order))
        order[i], order[j] = order[j], order[i]
        if ok(items[order[i]]):
            return items[order[i]]
    return None


def _obfuscated(anchor, memory, rng):
    pool = _askable(anchor)
    if len(pool) < 3:
        return None
    for _ in range(6):
        clues = rng.sample(pool, 2)
        if relation_key(clues[0]["relation"]) == relation_key(clues[1]["relation"]):
            continue
        target = _random_passing(
            pool,
            rng,
            lambda s, clues=clues: (
                s not in clues
                and not any(answer_in_text(s["value"]["text"], c["value"]["text"]) for c in clues)
            ),
        )
        if target and describes_only(clues, anchor["entity"], memory):
            return {
                "supporting": [*clues, target],
                "answer": target["value"]["text"],
                "target": target,
                "clues": clues,
            }
    return None


GROUPERS = {
    "factual": _factual,
    "numeric": _numeric,
    "temporal": _temporal,
    "comparison": _comparison,
    "multi_hop": _multi_hop,
    "obfuscated": _obfuscated,
}


LIST_READ_FACTOR = 32  # a list read costs about what 1/32 of a has() look-up per name does


def describes_only(clues: list[dict], entity: str, memory) -> bool:
    """Whether the clue statements (relation and value) pick out `entity` alone in memory.

    Starts from the entities of the rarest clue (counts are table look-ups) and narrows them
    clue by clue: by the clue's entity list when it is short, else by asking, for each entity
    left, whether it has the clue (for the last clue, until one other entity has it) - so a
    common value's list ("is a city": a large share of the memory, growing with the corpus)
    is never read."""
    ranked = sorted((memory.count(c["relation"], c["value"]), i) for i, c in enumerate(clues))
    if not ranked:
        return False
    keys = [(clues[i]["relation"], clues[i]["value"]) for _, i in ranked]
    left = set(memory.find(*keys[0]))
    for n, ((size, _), key) in enumerate(zip(ranked[1:], keys[1:]), start=2):
        if entity not in left:
            return False
        if size <= LIST_READ_FACTOR * len(left):
            left.intersection_update(memory.find(*key))
        elif n == len(keys):  # the last clue, a common one: the first other with it decides
            others = (other for other in left if other != entity)
            return memory.has(entity, *key) and not any(memory.has(o, *key) for o in others)
        else:
            left = {other for other in left if memory.has(other, *key)}
    return left == {entity}


# --- checks ----------------------------------------------------------------------------------


def reject_reason(question: dict, memory) -> str | None:
    """Why a question may not be kept, or None."""
    text = question.get("question", "").strip()
    if not text or not text.endswith("?"):
        return "not a question"
    if not question.get("answer") or not question.get("supporting"):
        return "no gold answer or supporting statements"
    if question["style"] == "comparison":  # a choice: every candidate named, the answer one of them
        names = [s["entity_name"] for s in question["supporting"]]
        if not all(name_in_text(n, text) for n in names):
            return "comparison question misses a candidate"
        if any(answer_in_text(s["value"]["text"], text) for s in question["supporting"]):
            return "answer in question"
    elif answer_in_text(question["answer"], text):
        return "answer in question"
    if question["style"] == "obfuscated":
        anchor = memory.get(question["anchor"]) or {}
        names = {question["anchor"], *anchor.get("names", []), anchor.get("entity_name", "")}
        if any(n and name_in_text(n, text) for n in names):
            return "obfuscated question names its entity"
        if not describes_only(question["clues"], question["anchor"], memory):
            return "description not unique"
    if question["style"] == "multi_hop" and question.get("hidden"):
        if name_in_text(question["hidden"], text):
            return "multi-hop question names the hidden entity"
    return None


def _record(anchor: dict, group: dict, text: str, generator: str) -> dict:
    supporting = group["supporting"]
    answer_type = (
        "number"
        if group["style"] in ("numeric", "temporal")
        else "entity"
        if group["style"] == "comparison"
        else group["target"]["value"]["type"]
    )
    record = {
        "id": f"{anchor['entity']}/{group['style']}",
        "style": group["style"],
        "question": text,
        "answer": group["answer"],
        "answer_type": answer_type,
        "supporting": supporting,
        "anchor": anchor["entity"],
        "source_docs": sorted({s["source"] for s in supporting}),
        "generator": generator,
    }
    if "clues" in group:
        record["clues"] = group["clues"]
    if "hidden" in group:
        record["hidden"] = group["hidden"]["entity_name"]
    if "operation" in group:
        record["operation"] = group["operation"]
    return record


def _keep(records: list[dict], ctx) -> list[dict]:
    kept = []
    for record in records:
        reason = reject_reason(record, ctx.memory)
        if reason:
            ctx.counters.reject(STAGE, f"{reason} ({record['style']})")
        else:
            ctx.counters.add(STAGE, f"kept {record['style']}")
            kept.append(record)
    return kept


def _groups(items: list[dict], ctx) -> list[tuple[dict, dict]]:
    styles = list(ctx.config.questions.styles)
    per_entity = ctx.config.questions.per_entity
    out = []
    for anchor in items:
        rng = ctx.rng(anchor["entity"])
        order = styles[:]
        rng.shuffle(order)
        groups = groups_for(anchor, ctx.memory, rng, order)[:per_entity]
        if not groups:
            ctx.counters.reject(STAGE, "entity without a usable statement group")
        out += [(anchor, g) for g in groups]
    return out


# --- the stage methods ------------------------------------------------------------------------


def heuristic_text(group: dict, anchor: dict, memory) -> str | None:
    """The baseline's wording of a group's question."""
    style, s = group["style"], group["supporting"]
    if style == "factual":
        return ask(_subject(s[0]), s[0])
    if style == "multi_hop":
        return ask(describe_value(s[0], memory), s[1])
    if style == "obfuscated":
        return ask(describe_subject(group["clues"], anchor.get("type")), group["target"])
    if style == "numeric":
        a, b = s
        if not is_noun_relation(a["relation"]):
            return None
        unit = a["value"].get("unit")
        suffix = f", in {unit}" if unit else ""
        return (
            f"What is the difference between the {a['relation']} of {_subject(a)} and the "
            f"{b['relation']} of {_subject(b)}{suffix}?"
        )
    if style == "temporal":
        return f"How many years lie between {_event(s[0])} and {_event(s[1])}?"
    if style == "comparison":
        if not is_noun_relation(s[0]["relation"]):
            return None
        names = [_subject(x) for x in s]
        listed = ", ".join(names[:-1]) + f" or {names[-1]}"
        degree = (
            group["operation"]
            if len(s) > 2
            else {"largest": "larger", "smallest": "smaller"}[group["operation"]]
        )
        return f"Which has the {degree} {s[0]['relation']}: {listed}?"
    return None


def _event(statement: dict) -> str:
    """ "the year in which Bach was born"; "the founding year of Google" (noun relations)."""
    if is_noun_relation(statement["relation"]):
        return f"the {statement['relation']} of {_subject(statement)}"
    relation = re.sub(r"\s+(?:in|on|at)$", "", statement["relation"])
    return f"the year in which {_subject(statement)} {relation}"


class HeuristicQuestions:
    """Heuristic baseline: grammar rules over the statements (no LLM); same checks."""

    name = STAGE

    def run(self, items: list[dict], ctx) -> list[dict]:
        records = []
        for anchor, group in _groups(items, ctx):
            text = heuristic_text(group, anchor, ctx.memory)
            if text is None:
                ctx.counters.reject(STAGE, f"no wording for the relation ({group['style']})")
                continue
            records.append(_record(anchor, group, text, "heuristic"))
        return _keep(records, ctx)


SCHEMA = object_schema({"question": STRING, "answer": STRING})
STYLE_GUIDE = {
    "factual": "Ask for the answer directly.",
    "numeric": "Ask for the {operation} of the two numbers (the solver must compute it).",
    "temporal": "Ask how many years lie between the two dated events.",
    "comparison": "Ask which entity has the {operation} value of the shared property.",
    "multi_hop": "Ask about the second entity WITHOUT naming it: refer to it only through the "
    "first statement, so the solver must find it first. Never write the name {hidden}.",
    "obfuscated": "Never name {anchor}: describe it only by the clue statements, then ask for "
    "the answer.",
}


def _check(obj: dict) -> None:
    require(obj, question=str, answer=str)


class LLMQuestions:
    """The method: the LLM writes each group's question (style, statements, gold answer given);
    its answer must agree with the gold, then the same checks as the baseline."""

    name = STAGE
    prompt = "question_v2"

    def run(self, items: list[dict], ctx) -> list[dict]:
        template = load_prompt(self.prompt)
        jobs = _groups(items, ctx)
        prompts = [template.messages(**self.fields(anchor, group)) for anchor, group in jobs]
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
        records = []
        for (anchor, group), obj in zip(jobs, parsed):
            if obj is None:
                continue
            if not answers_match(obj["answer"], group["answer"]):
                ctx.counters.reject(
                    STAGE, f"model answer disagrees with the statements ({group['style']})"
                )
                continue
            records.append(_record(anchor, group, obj["question"].strip(), "llm"))
        return _keep(records, ctx)

    @staticmethod
    def fields(anchor: dict, group: dict) -> dict:
        hidden = group.get("hidden", {}).get("entity_name", "")
        guide = STYLE_GUIDE[group["style"]].format(
            operation=group.get("operation", ""), hidden=hidden, anchor=anchor["entity_name"]
        )
        clues = group.get("clues", [])
        lines = [
            f"{i}. {s['sentence']}" + ("  [clue]" if s in clues else "")
            for i, s in enumerate(group["supporting"], 1)
        ]
        return {
            "style": group["style"].replace("_", "-"),
            "guide": guide,
            "statements": "\n".join(lines),
            "answer": group["answer"],
        }


def sub_questions(question: dict, memory=None) -> list[str]:
    """The question split into the look-ups it needs, in order, naming nothing the question
    hides (used by plans' analyses and by reasoning's first step)."""
    style, s = question["style"], question["supporting"]
    if style in ("numeric", "temporal", "comparison"):
        asks = [ask(_subject(x), x) for x in s]
        last = {
            "numeric": "Subtract the smaller number from the larger.",
            "temporal": "Count the years between the two dates.",
            "comparison": f"Pick the {question.get('operation', 'largest')} value.",
        }[style]
        return [a for a in asks if a] + [last]
    if style == "multi_hop":
        hidden = describe_value(s[0], memory)
        return [f"Which entity is {hidden}?", ask("it", s[1]) or f"What is its {s[1]['relation']}?"]
    if style == "obfuscated":
        clues = question.get("clues", s[:-1])
        described = describe_subject(clues, None).removeprefix("the entity ")
        return [
            f"Which entity is the one {described}?",
            ask("it", s[-1]) or "What is asked about it?",
        ]
    return [question["question"]]
