"""Unit (single process, seconds): contract tests of the synthesis method, stage by stage.

The LLM is replaced by a scripted model (a test double: it answers each prompt with a reply
written here, so each defect a real model can make is produced on purpose); everything else is
real - the stage classes, the JSON parsing, the checks, the tool registry, the answer matching.
Each test shows that a correct reply is kept and that each defect is rejected (or, for a correct
paraphrase, accepted) with its reason counted. The heuristic baseline is tested on text it never
saw: reworded sentences and Python's own documentation.
"""

from __future__ import annotations

import ast
import json
import re
import sysconfig
from pathlib import Path

import pytest

from data_synthesis.answers import answer_in_text, answers_match, sentence_in_text
from data_synthesis.config import PipelineConfig
from data_synthesis.environment.registry import ToolRegistry
from data_synthesis.fas import planning, questions, reasoning
from data_synthesis.llm import strip_thinking
from data_synthesis.memory import (
    HeuristicExtractor,
    InMemoryView,
    LLMExtractor,
    build_records,
    count_multi_source,
    entity_key,
    heuristic_statements,
    prose_sentences,
    sentences,
)
from data_synthesis.stage_api import Counters, StageContext


class ScriptedModel:
    """Test double for an LLM backend: `respond(system, user)` gives each reply."""

    name = "scripted"

    def __init__(self, respond):
        self.respond = respond
        self.prompts: list[list[dict]] = []
        self.schemas: list[dict | None] = []

    def generate(self, prompts, seed, schema=None, stop=None):
        self.prompts += prompts
        self.schemas.append(schema)
        return [self.respond(p[0]["content"], p[-1]["content"]) for p in prompts]


def context(stage: str, llm=None, memory=None, **config) -> StageContext:
    cfg = PipelineConfig(**config)
    cfg.backend.max_retries = 1
    return StageContext(
        config=cfg,
        llm=llm,
        tools=ToolRegistry.from_config(None),
        memory=memory,
        counters=Counters(),
        seed=7,
        stage=stage,
    )


def rejects(ctx) -> dict:
    return dict(ctx.counters.rejects.get(ctx.stage, {}))


# --- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "predicted, gold, same",
    [
        ("2850 kilometres", "2,850 km", True),
        ("the Danube", "Danube River", True),
        ("2.85 thousand km", "2,850 km", True),
        ("October 3, 1990", "3 October 1990", True),
        ("about 9.1 million", "9,100,000", True),
        ("PARIS.", "Paris", True),
        ("1991", "1990", False),
        ("2,851 km", "2,850 km", False),
        ("2850 m", "2,850 km", False),
        ("Rhine", "Danube River", False),
        ("Paris, Texas", "Paris", False),
    ],
)
def test_answers_match_typed_values(predicted, gold, same):
    assert answers_match(predicted, gold) is same


def test_leak_checks_see_through_formats():
    assert answer_in_text("2,850 km", "Is the river 2850 kilometres long?")
    assert answer_in_text("Danube River", "Does it lie on the Danube?")
    assert not answer_in_text("Vienna", "What is the capital of Austria?")
    sentence = "Peru has a population of about 34 million."
    assert sentence_in_text(sentence, "Peru has a population of about 34 million")
    assert not sentence_in_text(sentence, "population of Peru")
    # repeating the question's own words is no leak
    assert not sentence_in_text(
        "The 1930 FIFA World Cup was held in Uruguay.",
        "country 1930 FIFA World Cup was held in",
        given="What is the capital of the country that the 1930 FIFA World Cup was held in?",
    )


def test_leak_checks_match_whole_words_of_the_text():
    """The checks find a run of words by one string search in the text's tokens between
    spaces: a word is never matched inside a longer one, nor across punctuation's tokens,
    and the n-gram share is counted as a scan of the text's n-grams would count it."""
    from data_synthesis.answers import name_in_text, normalise

    assert name_in_text("Vienna", "Tourists visit Vienna, Austria.")
    assert not name_in_text("Vienna", "The Viennas of the world")
    assert not name_in_text("New York", "The New Yorker magazine")
    assert answer_in_text("the Danube River", "It lies on a Danube.")  # articles, generic words
    text = "Triton was discovered by William Lassell in 1846, only 17 days after Neptune."
    sentence = "Triton was discovered by William Lassell in 1846 at Liverpool."
    words = normalise(sentence).split()
    grams = {tuple(words[i : i + 5]) for i in range(len(words) - 4)}
    hay = normalise(text).split()
    found = grams & {tuple(hay[i : i + 5]) for i in range(len(hay) - 4)}
    assert len(found) == 3 and len(grams) == 6  # half of the sentence's 5-grams: a copy
    assert sentence_in_text(sentence, text)
    assert not sentence_in_text(sentence, text, share=0.51)


def test_thinking_blocks_are_stripped():
    assert strip_thinking('<think>maybe {"a": 1}</think>\n{"b": 2}') == ('{"b": 2}', True)
    assert strip_thinking("plain") == ("plain", False)
    assert strip_thinking("<think>never closed {") == ("", True)


# --- memory -----------------------------------------------------------------------------------

VIENNA = {
    "id": "d1",
    "title": "Vienna",
    "text": "Vienna is the capital of Austria. It lies on the Danube. "
    "Vienna had about 2 million inhabitants in 2023.",
}
DANUBE = {
    "id": "d2",
    "title": "Danube",
    "text": "The Danube River is about 2,850 km long. The Danube flows into the Black Sea.",
}


def statement(entity, relation, value, value_type, sentence, unit=None, time=None):
    return {
        "entity": entity,
        "relation": relation,
        "value": value,
        "value_type": value_type,
        "unit": unit,
        "time": time,
        "sentence": sentence,
    }


def memory_reply(system, user):
    if "Title: Vienna" in user:
        return json.dumps(
            {
                "statements": [
                    statement(
                        "Austria",
                        "capital",
                        "Vienna",
                        "entity",
                        "Vienna is the capital of Austria.",
                    ),
                    statement(
                        "Vienna", "lies on", "the Danube", "entity", "It lies on the Danube."
                    ),
                    statement(
                        "Vienna",
                        "inhabitants",
                        "about 2 million",
                        "number",
                        "Vienna had about 2 million inhabitants in 2023.",
                        time="2023",
                    ),
                    # defects: a value its sentence does not state, a sentence not in the document
                    statement("Vienna", "founded", "500 BC", "date", "It lies on the Danube."),
                    statement(
                        "Vienna", "mayor", "Ludwig", "entity", "The mayor of Vienna is Ludwig."
                    ),
                ]
            }
        )
    return '<think>The text is about a river. {"draft": 1}</think>' + json.dumps(
        {
            "statements": [
                statement(
                    "Danube River",
                    "length",
                    "about 2,850 km",
                    "number",
                    "The Danube River is about 2,850 km long.",
                    unit="km",
                ),
                statement(
                    "the Danube",
                    "flows into",
                    "the Black Sea",
                    "entity",
                    "The Danube flows into the Black Sea.",
                ),
            ]
        }
    )


def test_llm_memory_grounds_types_and_merges_statements():
    model = ScriptedModel(memory_reply)
    ctx = context("extract", llm=model)
    found = LLMExtractor().run([VIENNA, DANUBE], ctx)
    assert model.schemas[0]["properties"]["statements"]["type"] == "array"  # constrained
    assert len(found) == 5 and len({s["id"] for s in found}) == 5
    assert rejects(ctx) == {
        "statement value not in its sentence": 1,
        "statement sentence not in the document": 1,
    }
    assert ctx.counters.counts["extract"]["thinking blocks stripped"] == 1
    by = {(s["entity"], s["relation"]): s for s in found}
    assert by[("vienna", "inhabitants")]["value"]["number"] == 2e6
    assert by[("vienna", "inhabitants")]["time"] == "2023"
    assert by[("danube river", "length")]["value"]["unit"] == "km"
    assert VIENNA["text"][slice(*by[("austria", "capital")]["span"])] == (
        "Vienna is the capital of Austria."
    )
    records = {r["entity"]: r for r in build_records(found)}
    # "Danube River" and "the Danube" are one entity; "the Danube" as a value links to it
    assert records["danube"]["sources"] == ["d1", "d2"] or records["danube"]["sources"] == ["d2"]
    assert by[("vienna", "lies on")]["value"]["entity"] == "danube"
    assert "danube" in records["vienna"]["links"]


def test_llm_memory_malformed_json_is_retried_then_counted():
    # attempt 1: both fail; attempt 2 (the one retry): both fail again, last reasons counted
    replies = iter(["{}", "no json at all", '{"statements": [', '{"statements": "x"}'])
    ctx = context("extract", llm=ScriptedModel(lambda s, u: next(replies)))
    assert LLMExtractor().run([VIENNA, DANUBE], ctx) == []
    assert rejects(ctx) == {
        "malformed JSON": 1,
        "schema: key 'statements' is not a non-empty list": 1,
        "document without statements": 2,
    }
    assert ctx.counters.counts["extract"]["llm retries"] == 2


REWORDED = [
    {
        "id": "r1",
        "text": "Austria's capital is Vienna. Vienna, a city of music, lies on the "
        "Danube. The Danube River flows into the Black Sea.",
    },
    {
        "id": "r2",
        "text": "The Danube is a river about 2,850 kilometres long. Its source is in "
        "the Black Forest. In 1996 the river was declared a protected waterway.",
    },
    {
        "id": "r3",
        "text": "Marie Curie was born in Warsaw in 1867. She worked at the University "
        "of Paris, where she discovered polonium and radium.",
    },
]


def test_heuristic_memory_reads_reworded_text():
    facts = {
        (s["entity"], s["relation"], s["value"]["text"])
        for d in REWORDED
        for s in heuristic_statements(d)
    }
    assert ("austria", "capital", "Vienna") in facts
    assert ("vienna", "lies on", "the Danube") in facts
    assert ("danube river", "flows into", "the Black Sea") in facts
    assert ("danube", "length", "2,850 kilometres") in facts
    assert ("marie curie", "was born in", "Warsaw") in facts
    assert ("marie curie", "worked at", "the University of Paris") in facts
    ctx = context("extract")
    records = build_records(HeuristicExtractor().run(REWORDED, ctx))
    danube = next(r for r in records if r["entity"] == "danube")
    assert danube["sources"] == ["r1", "r2"]  # "Danube River" and "The Danube" merged
    assert count_multi_source(records) >= 1
    born = next(s for s in danube["statements"] + records[0]["statements"] if s)
    assert born["extractor"] == "heuristic"


def test_names_of_one_alias_merge_only_when_they_can_be_one_entity():
    """Keys that differ only by generic words ("danube river" / "danube") merge into one
    record; until 2026-12-05 every such pair did, and the bundled corpus merged Kenya (a
    country) with Mount Kenya, Mexico with Mexico City and Geneva with Lake Geneva. Now two
    keys whose kinds ("is a" nouns and generic words, widened by memory.KINDS) share nothing
    stay two records, and a value names the one it says: "Mount Kenya" the mountain."""
    docs = [
        {
            "id": "k",
            "title": "Kenya",
            "text": "Kenya is a country in East Africa. Its highest mountain is Mount Kenya.",
        },
        {"id": "m", "title": "Mount Kenya", "text": "Mount Kenya is an extinct volcano."},
        {"id": "d1", "title": "Danube", "text": "The Danube is a river in Europe."},
        {"id": "d2", "title": "Danube River", "text": "The Danube River flows into the Black Sea."},
    ]
    records = {
        r["entity"]: r for r in build_records(HeuristicExtractor().run(docs, context("extract")))
    }
    assert {"kenya", "mount kenya"} <= set(records)
    assert records["kenya"]["type"] == "country" and records["mount kenya"]["type"] == "volcano"
    highest = next(s for s in records["kenya"]["statements"] if s["relation"] != "is a")
    assert (
        highest["value"]["entity"] == "mount kenya" and "mount kenya" in records["kenya"]["links"]
    )
    merged = [key for key in records if "danube" in key]
    assert len(merged) == 1 and sorted(records[merged[0]]["sources"]) == ["d1", "d2"]


def test_a_statement_stays_in_its_paragraph_and_drops_a_dangling_conjunction():
    """A sentence runs on across a line break (hard-wrapped text) but never across a blank line
    (seen on docstrings: a heading or a command list read into the sentence before it), and a
    value cut at a comma loses the conjunction before it."""
    from data_synthesis.memory import sentences

    text = "Usage notes\n\nthe tool reads a file\nand writes it back. Done."
    assert [text[a:b] for a, b in sentences(text)] == [
        "Usage notes",
        "the tool reads a file\nand writes it back.",
        "Done.",
    ]
    # an initial goes on a name, not on a sentence's first word (until 2026-12-07 "... by
    # Queen Elizabeth I. The writer James Joyce was born ..." was one sentence)
    text = "It was founded by Queen Elizabeth I. The writer John F. Kennedy was born there."
    assert [text[a:b] for a, b in sentences(text)] == [
        "It was founded by Queen Elizabeth I.",
        "The writer John F. Kennedy was born there.",
    ]
    docs = [
        {"id": "t", "text": "Tokyo hosted the 1964 Summer Olympics and, in 2021, the Games."},
        {"id": "c", "text": "The copy module copies objects\n\nshallow copies share children."},
    ]
    docs.append({"id": "p", "text": "* Batched computation (multiple matrices in a single run)"})
    values = {s["value"]["text"] for d in docs for s in heuristic_statements(d)}
    assert "the 1964 Summer Olympics" in values
    assert all(re.search(r"\w", value) for value in values)  # not ")" alone
    assert all("\n\n" not in s["sentence"] for d in docs for s in heuristic_statements(d))
    # a list item's statement quotes the item without its mark (the knowledge lines of
    # reasoning documents read "- - Async support ..." when it kept it)
    item = {
        "id": "h",
        "title": "httpx",
        "text": "Changes:\n\n- Async support becomes fully optional.",
    }
    (said,) = heuristic_statements(item)
    assert said["sentence"] == "Async support becomes fully optional."
    assert item["text"][slice(*said["span"])] == said["sentence"]


MARKDOWN = """[![PyPI](https://img.shields.io/pypi/v/kiln.svg)](https://pypi.org/project/kiln)

# Kiln

**Kiln** is a [build tool](https://example.org/docs/tools.html) for Python packages.
Kiln provides a [Runner](https://kiln.readthedocs.io/en/latest/api.Runner.html) for
`pyproject.toml` projects.

```bash
pip install kiln
Kiln installs into the active venv.
```

| Option | Meaning |
| Timeout is the limit of a build. |

- Improved the detection reliability based on user reports.
- Kiln uses *zstd* for its caches.
"""


def _triples(doc: dict) -> set[tuple[str, str, str]]:
    """(entity name, relation, value text) of each statement the baseline reads in `doc`."""
    return {
        (s["entity_name"], s["relation"], s["value"]["text"]) for s in heuristic_statements(doc)
    }


def test_headlines_changelogs_and_plural_nouns_in_readmes():
    """81 package READMEs of this machine (2026-12-07) asked "What does Hash value?" ("Hash
    values differ from ...": a plural noun and its base-form verb), "What did tokenizers ships
    dedicate?" (a past form before its object's noun is no verb), "What did the oldest
    distributed version support is?" (a participle before "is" is the subject's), "What did
    Performance measure on?" (a headline's bare participle), "What did Correctly remove SIG
    remnant in utf-7 decode?" and "What did De-duplicate any headers contain in?" (changelog
    instructions), "What did Fixup some build errors stop?" (a relative clause's verb), "What
    does Convenience function for?" (a label), "What does a test client for simulating HTTP
    request during?" (a gerund's object), "What does megatron-agentic test? => alone" and
    "Where did Max Planck teach? => there" (an adverb is no value), "What do scipy run on?"
    ("they" is no topic), "What does fullmatch behave? => like match", "How can Mpmath be
    installed? => using", "What is ShellDetectionFailure raised? => if ...", "What is the
    unique way of PyTorch?", "What is the couple of the Transport API?", "What does the attacks
    use and abuse less common feature of?" (a plural noun's base-form verb), "What should
    charset-normalizer remain?" ("The factors": a plural is no title's topic) and "What will
    anyio blend in? => with the native libraries"; "What does Python wheel for?" ("Python
    wheels for ... are provided": a plural's passive later in the sentence is its verb, as in
    "Its two moons, Phobos and Deimos, were discovered by ..."). Names keep their
    past tenses: "Einstein moved to Berlin", "Twelve astronauts walked on the Moon"."""
    doc = {
        "id": "readmes",
        "title": "widget",
        "text": "Hash values differ from earlier versions. Major issues include:\n\n"
        "`tokenizers` ships dedicated wheels for the free-threaded build of CPython.\n\n"
        "The oldest distributed version supported is 2022.8.1.\n\n"
        "Performance measured on 1GB of text using the GPT-2 tokeniser.\n\n"
        "Wheels published to PyPI.\n\n"
        "- Correctly remove SIG remnant in utf-7 decoded string.\n"
        "- De-duplicate any headers also contained in proxy_headers.\n"
        "- Fixup some build errors, mostly README syntax which stopped twine from uploading.\n\n"
        "Convenience functions for quick access:\n\n"
        "A test client for simulating HTTP requests during testing.\n\n"
        "The unit tests alone (under a minute): `bash scripts/test.sh`. Max Planck and Albert Einstein taught there.\n\n"
        "Together, they run on all popular operating systems.\n\n"
        "``fullmatch`` behaves like ``match``. Mpmath can also be installed using\n\n"
        "``ShellDetectionFailure`` is raised if ``detect_shell`` fails.\n\n"
        "PyTorch has a unique way of building neural networks. The Transport API has a couple "
        "of significant changes. Germany has a total area of 357,588 square kilometres.\n\n"
        "In 1914 Einstein moved to Berlin. Twelve astronauts walked on the Moon.\n\n"
        "The attacks use and abuse less common features of XML. The factors should remain the "
        "same. It will blend in with the native libraries.\n\n"
        "Python wheels for NVIDIA's Jetson Nano and Jetson AGX Orin are provided here. Its two "
        "moons, Phobos and Deimos, were discovered by Asaph Hall.",
    }
    assert _triples(doc) == {
        ("tokenizers", "ships dedicated", "wheels for the free-threaded build of CPython"),
        ("the oldest distributed version supported", "is", "2022.8.1"),
        ("fullmatch", "behaves like", "match"),
        ("PyTorch", "has", "a unique way of building neural networks"),
        ("the Transport API", "has", "a couple of significant changes"),
        ("Germany", "total area", "357,588 square kilometres"),
        ("Einstein", "moved to", "Berlin"),
        ("Twelve astronauts", "walked on", "the Moon"),
        ("widget", "will blend in with", "the native libraries"),
        ("widget's two moons", "were discovered by", "Asaph Hall"),
    }


def test_rst_literal_blocks_and_indented_prompts_are_no_prose():
    """ "uv run pytest" under ".. code-block:: bash" asked "What do uv run?", and "    >>>
    p.rlimit(psutil.RLIMIT_NOFILE, (5, 5))  # set resource limits" (a sentence starting after
    "psutil.") "What do RLIMIT_NOFILE set?". A ".. note::" directive's body is prose; the line
    ending in "::" is prose too."""
    doc = {
        "id": "rst",
        "title": "widget",
        "text": "Widget can be installed with pip::\n\n    pip install widget\n\n"
        "4. **Verify installation**:\n\n   .. code-block:: bash\n\n"
        "       uv run pytest\n\n"
        ".. note::\n    **Version 2.0.0** changes the default scheme to affine32.\n\n"
        "Example::\n\n    >>> p.nice(10)\n\n"
        "Or at a prompt:\n\n    >>> p.rlimit(psutil.RLIMIT_NOFILE, (5, 5))  # set resource limits\n",
    }
    assert _triples(doc) == {
        ("Widget", "can be installed with", "pip"),
        ("Version 2.0.0", "changes", "the default scheme to affine32"),
    }


def test_opening_phrases_and_titles_leave_the_subject_whole():
    """ "Together with Airbus, Boeing makes ..." and "Today Siemens makes ..." kept their
    opening words in the subject; a pronoun after an opening phrase ("Known as the Waltz King,
    he wrote ...") is the subject (a code name before it is what it stands for); a title is a
    subject whatever its first word ("One Hundred Years of Solitude is ...": no statement
    before, its first word "One" opening no subject elsewhere); a bare plural subject's
    base-form verb is its verb ("Readers and writers support a dialect argument, which is ..."
    took "is"; not "Bindings over the Rust implementation"); "and then" or "and" and a modal
    end a value ("a new compound object and then" was one); "It is best to first set ..." is an
    expletive "it"."""
    river = {
        "id": "m",
        "title": "Mississippi River",
        "text": "The Mississippi River is a river in North America. Together with its longest "
        "tributary, the Missouri, it forms one of the longest river systems in the world. "
        "Together with Airbus, Boeing makes most of the large passenger aircraft. Today Siemens "
        "makes equipment for factories. VERSION_TUPLE, it will be removed in the next release. "
        "Readers and writers support a dialect argument, which is a convenient handle. "
        "Bindings over the Rust implementation. A shallow copy constructs a new compound "
        "object and then inserts references. It is best to first set all parameters.",
    }
    assert _triples(river) == {
        ("the Mississippi River", "is a", "river"),
        ("Mississippi River", "forms", "one of the longest river systems in the world"),
        ("Boeing", "makes", "most of the large passenger aircraft"),
        ("Siemens", "makes", "equipment for factories"),
        ("VERSION_TUPLE", "will be removed in", "the next release"),
        ("Readers and writers", "supports", "a dialect argument"),
        ("a shallow copy", "constructs", "a new compound object"),
    }
    book = {
        "id": "b",
        "title": "One Hundred Years of Solitude",
        "text": "One Hundred Years of Solitude is a work by Gabriel Garcia Marquez. The novel was "
        "first published in Buenos Aires.",
    }
    assert _triples(book) == {
        ("One Hundred Years of Solitude", "is a", "work"),
        ("One Hundred Years of Solitude", "was published in", "Buenos Aires"),
    }


def test_this_x_is_the_topic_only_when_x_names_what_the_topic_is():
    """81 package READMEs asked "What is orjson? => compatible with all other options" ("This
    option is ..."), "What does defusedxml protect?" ("The limit protects ..."), "What is idna known as? => a mapping" ("This functionality, known as ..."),
    "What does pydantic drop?" ("This release drops ...") and "What does Our inspiration come
    from?" (the writers' own: "Our dumps() method" is the name's), "What do Pretty-print
    output with?" ("output" is a noun before a preposition), "What does FP8 mix?" (a list
    item's "mixed precision", where "Hawking studied physics at Oxford." has a verb), "What can
    macOS install?" ("On Linux, macOS, and Windows, you can install ..."), "What is pyahocorasick
    written in? => C. You need a C compiler ..." (a sentence after "C." is one), "What did
    Three days later he make?" (a pronoun inside a subject), "What does Reading use?" (a
    gerund the text never writes as a name), "What are Behind the scenes there?" and "What are
    others?" (an expletive "there", "Others"), "What does Datatrove keep? => track" ("keeps
    track of", "took part in" are one verb), "What does Python script for?" (a list item's
    noun before "for loading"); "The uname command for BSD based distributions" gave (.., based, distributions).
    "This library", a word of the title ("This policy") and what the text called its topic
    ("Everest is a mountain ... This mountain") stand for it; "Gounod based the opera on" is a
    verb."""
    doc = {
        "id": "readme",
        "title": "orjson",
        "text": "orjson is a fast library for JSON. This option is compatible with all other "
        "options. This functionality, known as a mapping, is local. This release drops support "
        "for Python 3.9. Our inspiration comes from several research papers. Our dumps() "
        "method returns a bytes object. This library "
        "supports Python 3.10 and higher.\n\nThe uname command for BSD based distributions.\n\n"
        "Pretty-print output with an indent of two spaces.\n\n"
        "- FP8 mixed precision with Transformer Engine\n"
        "- Python scripts for loading and parsing the lexicon\n\n"
        "This module is written in C. You need a C compiler. On Linux, macOS, and Windows, you "
        "can also install binary wheels. Three days later he made the first call. Reading uses "
        "the existing readers. Behind the scenes there are some features. Others are "
        "conceivable.",
    }
    assert _triples(doc) == {
        ("orjson", "is a", "fast library"),
        ("dumps() method", "returns", "a bytes object"),
        ("orjson", "is written in", "C"),
        ("orjson", "supports", "Python 3.10 and higher"),
    }
    policy = {"id": "p", "title": "Travel policy", "text": "This policy applies to all staff."}
    assert _triples(policy) == {("Travel policy", "applies to", "all staff")}
    city = {  # "is the capital of": a city; "The limit" is no kind of it
        "id": "w",
        "title": "Washington, D.C.",
        "text": "Washington, D.C. is the capital of the United States. The city was founded in "
        "1790. The limit protects the parser against attacks.",
    }
    assert ("Washington, D.C.", "was founded in", "1790") in _triples(city)
    assert not [t for t in _triples(city) if t[1] == "protects"]
    everest = {
        "id": "e",
        "title": "Mount Everest",
        "text": "Mount Everest is a mountain in the Himalayas. This mountain attracts many "
        "climbers. Charles Gounod based the opera on a play by Goethe. Stephen Hawking studied "
        "physics at Oxford. The Mid-Atlantic Ridge runs down the middle of the ocean floor. The "
        "Air and Space Museum there displays the Wright Flyer. Dante took part in the politics "
        "of Florence. Thirteen teams took part, seven from South America.",
    }
    assert _triples(everest) == {
        ("Mount Everest", "is a", "mountain"),
        ("Mount Everest", "attracts", "many climbers"),
        ("Charles Gounod", "based", "the opera on a play by Goethe"),
        ("Stephen Hawking", "studied", "physics at Oxford"),
        ("the Mid-Atlantic Ridge", "runs down", "the middle of the ocean floor"),
        ("the Air and Space Museum", "displays", "the Wright Flyer"),
        ("Dante", "took part in", "the politics of Florence"),
    }


def test_markdown_gives_statements_without_marks_code_or_tables():
    """A README's links, inline code and emphasis stay out of names and values (before: 353 of
    887 statements of 51 package READMEs held them, e.g. "a [Runner](https"); fenced code and
    table rows give no statement; a sentence is not cut inside a link's url; a bullet that is
    a changelog's verb ("Improved the detection ... based on") is no subject."""
    doc = {"id": "readme-kiln", "title": "Kiln", "text": MARKDOWN}
    found = _triples(doc)
    assert ("Kiln", "is a", "build tool") in found
    assert ("Kiln", "provides", "a Runner") in found
    assert ("Kiln", "uses", "zstd for its caches") in found
    assert all(not re.search(r"[\[\]`*#|]", " ".join(f)) for f in found), found
    assert not [f for f in found if f[0].startswith(("Kiln installs", "Timeout", "Improved"))]
    spans = [s["span"] for s in heuristic_statements(doc)]
    runner = next(s for s in heuristic_statements(doc) if s["value"]["text"] == "a Runner")
    assert runner["sentence"] == MARKDOWN[runner["span"][0] : runner["span"][1]]
    assert runner["sentence"].endswith("projects.")  # the url's dots and line break end nothing
    assert all(MARKDOWN.index("```") > a or a > MARKDOWN.rindex("```") for a, _ in spans)


def test_instructions_bold_terms_and_bare_participles_in_readmes():
    """The unseen READMEs asked "What does Pass string to?" ("Pass strings to bm25s.tokenize()":
    an instruction, its plural object taken for the verb), "What does dedup block for?" ("-
    **[dedup](...)** blocks for deduplication": a term and its gloss), "What does Markdown
    parser do?" ("Markdown parser done right": a participle, no verb) and "What does the
    request ... know as?" ("idna, known as ...": a participle read as a verb). A term's gloss
    says nothing of another subject; a participle before a preposition is a passive; a name
    that is also a verb ("Mount Kilimanjaro", "Ruff", "True") opens no instruction. A word
    after an article, or after an article and an adjective, is no verb ("the latest released
    version" gave "What did Installation of the latest release?"). A subject cut at a list's
    first comma ("Local, remote and other file systems"), ending in "and" or opening with a
    pronoun ("It supersedes ...": verbs missed) is none; a past form before "by" is a passive; a label's before its colon says nothing."""
    doc = {
        "id": "readmes",
        "title": "ruff",
        "text": "Pass strings to `bm25s.tokenize()`, then index them.\n\n"
        "- **[dedup](src/datatrove/pipeline/dedup)** blocks for deduplication\n"
        "- **[filters](src/filters)** filter out (remove) some `Document`s based on rules\n"
        "- **[Platform details](https://x.io/p.html)** -- default paths for each system\n"
        "- **Requests** is an elegant HTTP library.\n\n"
        "Markdown parser done right.\n\n"
        "The Swiss Federal Institute of Technology in Lausanne, known as EPFL, was founded in 1969."
        "\n\n**Ruff supports over 900 lint rules**, many of which come from Flake8.\n\n"
        "Mount Kilimanjaro stands in the north of Tanzania. "
        "Express inclusive and/or exclusive bounds on orderable values. "
        "It renders True color. True color / emoji works with new Windows Terminal. "
        "Search returns the top-k passages.\n\n"
        "Installation of the latest released version from PyPI:\n\n"
        "Pliny the Younger wrote a description of the eruption.\n\n"
        "Local, remote and other file systems are supported through fsspec. "
        "Spanish, Quechua and Aymara are official languages of Peru. "
        "Batch operations automatically release the GIL and can run in parallel. "
        "Use W&B to build better models faster.\n\n"
        "First release of httpcore2 maintained by Pydantic.\n\n"
        "Up-to-date package also provided through conda-forge distribution:\n\n"
        "It supersedes the standard library's `encodings.idna`, which implements the 2003 "
        "specification.\n\n"
        "Python wheels for the Jetson Nano. It builds the wheels in CI.\n\n"
        "Table Mountain, about 1,085 metres high, rises above the city.\n\n"
        "Users with dict objects using non-str keys should specify an option. "
        "Pass an object to dumps().\n\n"
        "The Bologna Process, begun in 1999, reformed degrees.",
    }
    assert _triples(doc) == {
        ("Requests", "is a", "HTTP library"),
        ("the Swiss Federal Institute of Technology in Lausanne", "is known as", "EPFL"),
        ("Ruff", "supports over", "900 lint rules"),
        ("Mount Kilimanjaro", "stands in", "the north of Tanzania"),
        ("ruff", "renders", "True color"),
        ("True color / emoji", "works with", "new Windows Terminal"),
        ("Search", "returns", "the top-k passages"),
        ("Pliny the Younger", "wrote", "a description of the eruption"),
        ("Spanish", "are", "official languages of Peru"),
        ("First release of httpcore2", "is maintained by", "Pydantic"),
        ("Table Mountain", "rises", "above the city"),
        ("ruff", "builds", "the wheels in CI"),
        ("Users with dict objects using non-str keys", "should specify", "an option"),
        ("the Bologna Process", "was begun in", "1999"),
    }


def test_a_hard_wrapped_line_runs_on_into_the_next():
    """ "In 2011, Ondřej Čertík stepped down as lead developer, with Aaron\nMeurer, ..." was cut
    at the line's end (a name ends it), and so was a value ("available as part of the
    [Tidelift"): a line of 60 characters or more that ends in no full stop or colon is a
    paragraph's, wrapped; a short line (a heading, a label) still ends its sentence."""
    text = (
        "In 2011, Ondřej Čertík stepped down as lead developer, with Aaron\n"
        "Meurer, who also started as a Google Summer of Code student, taking his place.\n"
        "Installation\n"
        "Run the installer from the release page.\n"
        "Professional support for urllib3 is available as part of the [Tidelift\n"
        "Subscription](https://tidelift.com/subscription/pkg/pypi-urllib3).\n"
    )
    found = [text[a:b] for a, b in sentences(text)]
    assert found == [
        "In 2011, Ondřej Čertík stepped down as lead developer, with Aaron\nMeurer, who also "
        "started as a Google Summer of Code student, taking his place.",
        "Installation",
        "Run the installer from the release page.",
        "Professional support for urllib3 is available as part of the [Tidelift\n"
        "Subscription](https://tidelift.com/subscription/pkg/pypi-urllib3).",
    ]
    doc = {"id": "u", "title": "urllib3", "text": text}
    assert (
        "Professional support for urllib3",
        "is",
        "available as part of the Tidelift Subscription",
    ) in _triples(doc)


def test_a_blockquote_and_an_html_heading_in_a_readme():
    """A hard-wrapped blockquote is read as its sentences (before: "Chardet used our 477-file",
    the line ending the sentence and "> corpus ..." a sentence of its own, and the quote's
    first sentence none, its subject being "> Chardet"); a README's centred HTML title or
    tagline is a heading, no statement (before: "What does State-of-the-art pretrained model
    for?", from <h3><p>State-of-the-art pretrained models for inference</p></h3>)."""
    text = (
        "> Chardet reports higher accuracy on its own benchmark. Chardet used our 477-file\n"
        "> corpus when developing its early model weights.\n\n"
        '<h3 align="center">\n    <p>State-of-the-art pretrained models for inference</p>\n</h3>'
        "\n\n>>> chardet.detect(data) returns a dict.\n"
    )
    doc = {"id": "readme-chardet", "title": "Chardet", "text": text}
    assert _triples(doc) == {
        ("Chardet", "reports", "higher accuracy on its own benchmark"),
        ("Chardet", "used", "our 477-file corpus"),
    }
    for statement in heuristic_statements(doc):
        assert statement["sentence"] == text[statement["span"][0] : statement["span"][1]]
        assert statement["sentence"].startswith("Chardet")


def test_a_sentence_runs_on_past_a_line_that_cannot_end_it():
    """A hard-wrapped list of links ("It serializes\\n[dataclass](...),\\n[datetime](...),
    and\\n[UUID](...) instances natively.") is one sentence: before, its last line was a
    sentence of its own ("[UUID] instances natively", so "What does UUID instance?"). A line
    ending in a comma, a conjunction, a preposition or an article runs on unless the next
    starts a bullet, a numbered item, a heading or a table row."""
    text = (
        "It serializes\n[dataclass](https://x.io/a#dc),\n[datetime](https://x.io/a#dt), and\n"
        "[UUID](https://x.io/a#uuid) instances natively.\n\nSupported types are,\n- lists, and\n"
        "- dicts\n\nWe thank the\nUniversity of Vienna for hosting."
    )
    spans = [text[a:b] for a, b in prose_sentences(text)]
    assert spans[0].startswith("It serializes") and spans[0].endswith("natively.")
    assert spans[1:] == [
        "Supported types are,",
        "- lists, and",
        "- dicts",
        "We thank the\nUniversity of Vienna for hosting.",
    ]
    assert ("UUID", "instances", "natively") not in _triples({"id": "o", "text": text})


def test_idioms_and_instructions_give_no_statement():
    """Sentences of package READMEs that gave "What do end each input with?", "What are
    Releases made as? => needed", "What will Options on the client be respected? => (such as
    retries)", "What is Werkzeug up to?" and "What was Its predecessor function platform.dist
    deprecated since?": an instruction after a leading phrase, "as needed", an aside for a
    value and "it is up to" say nothing about an entity, and an "Its ..." subject that is not
    the topic's word or two names none."""
    text = (
        "In interactive mode, end each input with Ctrl-D,\nor on Windows with Ctrl-Z.\n\n"
        "Options on the client will be respected (such as retries) when making a request.\n\n"
        "Releases are made as needed when features are ready.\n\n"
        "It is up to the developer to\nchoose a template engine.\n\n"
        "Werkzeug is a WSGI library. Releases are made as tags. Its predecessor function\n"
        "platform.dist was deprecated in Python 3.5. Its first release is 0.1."
    )
    assert _triples({"id": "werkzeug", "title": "Werkzeug", "text": text}) == {
        ("Werkzeug", "is", "a WSGI library"),
        ("Releases", "are made as", "tags"),
        ("Werkzeug", "first release", "0.1"),
    }


def test_heuristic_memory_on_pythons_own_docs():
    """Docstrings of the standard library: prose nobody wrote for this project. (Until
    2026-12-06 a fifth statement came from shutil's label "Utility functions for copying and
    archiving files and directory trees": (utility, functions for, ...).)"""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for name in ("json/__init__.py", "argparse.py", "heapq.py", "textwrap.py", "shutil.py"):
        text = ast.get_docstring(ast.parse((stdlib / name).read_text(encoding="utf-8")))
        docs.append({"id": name, "text": " ".join(text.split())})
    ctx = context("extract")
    found = HeuristicExtractor().run(docs, ctx)
    assert len(found) >= 4 and len({s["source"] for s in found}) >= 2
    assert ("heaps", "are", "arrays") in {
        (s["entity"], s["relation"], s["value"]["text"]) for s in found
    }
    for s in found:
        assert s["sentence"] in docs[[d["id"] for d in docs].index(s["source"])]["text"]
        assert s["value"]["text"] and s["relation"] and s["entity"]


def test_heuristic_memory_leaves_changelogs_and_licences_out():
    """READMEs nobody here wrote (`make_machine_corpus.py --source package-readmes`) made the
    baseline ask "What does Refactor type reference?": a changelog entry credited to someone,
    a bulleted command, a licence in capitals are no statements; a value cut at a relative
    clause does not end in its preposition; a value wrapped over two lines is one line."""
    doc = {
        "id": "c",
        "title": "Widget",
        "text": "Widget is a parsing library.\n\n## Changes\n\n"
        "- Fix nested data being reported as a cycle by [@someone](https://x.org/someone)\n"
        "- Support named tuples in validation (#13978)\n"
        "- Improve discriminated union error messages for invalid variants\n\n"
        "Widget was written by Ada Lovelace and\ncontributors from the Widget team.\n\n"
        "THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY OF ANY KIND.\n\n"
        "In 1913 Niels Bohr proposed a model of the atom in which electrons move in orbits.",
    }
    found = _triples(doc)
    assert found == {
        ("Widget", "is a", "parsing library"),
        ("Widget", "was written by", "Ada Lovelace and contributors from the Widget team"),
        ("Niels Bohr", "proposed", "a model of the atom"),
    }


def test_heuristic_memory_leaves_subjects_that_need_their_context_out():
    """The same READMEs asked "What does the above command generate?", "What did Additional
    advance?" and "What does Fix break?": a subject pointing around its sentence, a capitalised
    first word the text never writes as a name and that is no noun, a list item's verb, an
    instruction ("Check for ..."), a clause in _italics_ opening with "While" are no subjects,
    and a participle ("being passed down to") is no verb of a statement. A name the text writes mid-sentence ("Python"), a noun ("Steel") and a name after
    an adjective ("Greater London") stay; a leading adverb goes ("Typically actions")."""
    doc = {
        "id": "r",
        "title": "Widget",
        "text": "The above command generates the following output.\n\n"
        "These files will be distributed across each task.\n\n"
        "This API supports the encoding.\n\n"
        "Additional features are supported by the extensions.\n\n"
        "- Fix exception raised in case of timeouts\n\n"
        "Check for existing pull requests addressing the same issue.\n\n"
        "_While annotated-types avoid runtime checks, the types stay._\n\n"
        "The HTTP/2 flag being passed down to the connection.\n\n"
        "The methods operate similarly to the methods described above.\n\n"
        "Widget runs on Python. Python is a programming language.\n\n"
        "Steel is an alloy of iron and carbon.\n\n"
        "Greater London has an area of 1,572 square kilometres.\n\n"
        "Typically actions are selected by passing strings.",
    }
    found = _triples(doc)
    assert found == {
        ("Widget", "runs on", "Python"),
        ("Python", "is a", "programming language"),
        ("Steel", "is an alloy of", "iron and carbon"),
        ("Greater London", "area", "1,572 square kilometres"),
        ("actions", "are selected by", "passing strings"),
    }


def test_heuristic_memory_reads_a_docstring_without_a_title():
    """The Python standard library's docstrings (no title) gave "Compiles a single command in
    the manner" as a subject, then as the topic that "The module" stood for ("What does
    Compiles a single command in the manner provide?"), and "This is bad class design" as a
    statement of the previous sentence's subject. A summary whose subject is left out
    ("Compiles a ..."), an instruction of two verbs ("Read and parse one ..."; not "Salt and
    pepper are"), a subject naming "this class", and "This" / "These" alone are no
    subjects; without a title, "The module" is no document's first subject either (with one,
    it is the title). "It" still stands for the topic, "Instances of" is a plural noun. The
    code of 3af2fd5 gave 8 statements here, 6 of them wrong."""
    text = (
        "Compiles a single command in the manner described above.\n\n"
        "Read and parse one configuration file, given as a file object.\n\n"
        "Instances of this class have call methods.\n\n"
        "Instances of Compile have a flags attribute.\n\n"
        "Salt and pepper are common spices.\n\n"
        "The module also provides a second interface.\n\n"
        "This is bad class design.\n\n"
        "These are shared across threads.\n\n"
        "It is part of the standard library."
    )
    assert _triples({"id": "codeop", "text": text}) == {
        ("Instances of Compile", "have", "a flags attribute"),
        ("Salt and pepper", "are", "common spices"),
        ("Instances of Compile", "is part of", "the standard library"),
    }
    assert _triples({"id": "codeop", "title": "codeop", "text": text}) == {
        ("Instances of Compile", "have", "a flags attribute"),
        ("Salt and pepper", "are", "common spices"),
        ("codeop", "provides", "a second interface"),
        ("codeop", "is part of", "the standard library"),
    }


def test_heuristic_memory_makes_no_statement_of_a_denied_verb():
    """ "Its normal route does not require technical climbing" (the bundled corpus) gave
    (Aconcagua's normal route, does require, technical climbing): "not" was skipped as an
    adverb. A verb group that denies ("does not", "doesn't", "never", "is not") makes no
    statement; "no longer" stays in its value, an adverb still goes ("also contains")."""
    doc = {
        "id": "a",
        "title": "Aconcagua",
        "text": "Its normal route does not require technical climbing. "
        "It never freezes in summer. "
        "Its summit isn't reached by any road. "
        "The old hut is no longer used by climbers. "
        "It also contains a glacier.",
    }
    assert _triples(doc) == {
        ("the old hut", "is", "no longer used by climbers"),
        ("Aconcagua", "contains", "a glacier"),
    }


def test_heuristic_memory_reads_definition_lists_and_leaves_broken_subjects_out():
    """More of the standard library's docstrings: a definition list's term ("* doublequote -
    controls ...") gave the subject "doublequote -" ("What does doublequote - control?"); a
    subject cut across two parentheses ("Authentication) and RFC 2487 (Secure SMTP") and one
    opening with a base-form verb and an article ("make a UUID based on ...") are no
    subjects."""
    doc = {
        "id": "csv",
        "text": "* doublequote - controls the handling of quotes inside fields.\n"
        "* escapechar - specifies a one-character string used to escape the delimiter.\n\n"
        "This should follow RFC 821 (SMTP), RFC 1869 (ESMTP), RFC 2554 (SMTP\n"
        "Authentication) and RFC 2487 (Secure SMTP over TLS).\n\n"
        "If no node is given, make a UUID based on the host ID and current time.",
    }
    assert _triples(doc) == {
        ("doublequote", "controls", "the handling of quotes inside fields"),
        ("escapechar", "specifies", "a one-character string used to escape the delimiter"),
    }


def test_heuristic_memory_reads_package_readmes():
    """57 package READMEs (a corpus the code had not seen) gave "a fast" as what Jinja is (a
    value cut between adjectives: its type became "fast"), "available at https" (a url cut at
    its colon), "More" and "Ability to make" as subjects (with "details" and "requests" for
    verbs), "Cookie handling no longer" (its relation "gets slower" says the opposite), the
    topic for an "it" that stands for the clause after it ("It is possible to modify ..."), and
    "follows" or "... projects like" as values. An "is a" type stops at a participle that opens
    its own phrase ("a tragedy written by", not "a fully featured HTTP client"). A word before a
    modal is a noun ("HTML templates can use"; the lexicon knows "templates" only as a verb),
    an emphasised "_While" opens no subject, and a list item that is only a link (a table of
    contents) is no prose. A subject holding a contracted verb ("It's highly configurable but
    comes with") is none, and a value that only qualifies its verb ("by default", "points to
    exactly") says nothing. A markdown heading is no prose ("### Modern string formatting using
    braces style" gave the verb "braces"), and a definition list's term with its gloss is no
    subject ("make - For running development" with the verb "commands")."""
    doc = {
        "id": "r",
        "title": "Jinja",
        "text": "Jinja is a fast, expressive, extensible templating engine. "
        "Requests is a simple, yet elegant, HTTP library. "
        "HTTPX is a fully featured HTTP client library for Python 3. "
        "The Indian Ocean is bounded by Africa to the west, Asia to the north. "
        "Sodium is a soft, silvery metal that reacts violently with water. "
        "Hamlet is a tragedy written by William Shakespeare. "
        "Apollo 11 was the first crewed mission to land on the Moon. "
        "Project documentation is available at https://www.python-httpx.org/. "
        "It is possible to modify a context-local state with contextualize(). "
        "It is easy to use. "
        "More details on used files, see the workflows. "
        "Ability to make requests directly to WSGI applications. "
        "Cookie handling no longer gets slower as the URL gets longer. "
        "The codebase efficiently trains models from 2B to 462B parameters. "
        "Error codes are as follows:\n\n"
        "Ruff is used in major open-source projects like:\n\n"
        "Every charset detector depends on sufficient content. "
        "HTML templates can use autoescaping. "
        "_While annotated-types avoids runtime checks, it is fast._\n\n"
        "- [Modern string formatting using braces style](#modern-string-formatting)\n\n"
        "It's highly configurable but comes with sensible defaults. "
        "Tables are disabled by default. "
        "The stack trace points to exactly where the error is.\n\n"
        "### Modern string formatting using braces style\n\n"
        "## Use less memory and run faster\n\n"
        "4. **make** - For running development commands (or use nmake on Windows)",
    }
    assert _triples(doc) == {
        ("Jinja", "is a", "templating engine"),
        ("Requests", "is a", "HTTP library"),
        ("HTTPX", "is a", "client library"),
        ("the Indian Ocean", "is bounded by", "Africa to the west"),
        ("Sodium", "is a", "silvery metal"),
        ("Hamlet", "is a", "tragedy"),
        ("Apollo 11", "is a", "crewed mission"),
        ("Project documentation", "is", "available at https://www.python-httpx.org/"),
        ("Jinja", "is", "easy to use"),
        ("Jinja", "trains", "models from 2B to 462B parameters"),
        ("Ruff", "is used in", "major open-source projects"),
        ("HTML templates", "can use", "autoescaping"),
    }


def test_heuristic_memory_reads_owned_and_plural_subjects():
    """ "His works include ..." gave the subject "His" ("What does His work?"): an owned word is
    a noun, and the subject becomes the document's topic's. A base-form verb after an owned
    plural or a list of names is the verb ("Avignon and Arles also lie on the Rhone, which
    ends in ..." gave the subject "Avignon and Arles also lie on Rhone"), and
    the relation is written in the third person as the others are, so questions word it as a
    verb ("What does ... lie on?", not "What is the lie on of ...?"). A list of names is not
    cut inside a title ("The Sun Also Rises, A Farewell| to Arms")."""
    doc = {
        "id": "j",
        "title": "James Joyce",
        "text": "His works include the short story collection Dubliners. "
        "Its chapters parallel episodes of the Odyssey. "
        "Avignon and Arles also lie on the Rhone, which ends in the Camargue. "
        "His novels include The Sun Also Rises, A Farewell to Arms and For Whom the Bell Tolls.",
    }
    assert _triples(doc) == {
        ("James Joyce's works", "includes", "the short story collection Dubliners"),
        ("James Joyce's chapters", "parallels", "episodes of the Odyssey"),
        ("Avignon and Arles", "lies on", "the Rhone"),
        ("James Joyce's novels", "includes", "The Sun Also Rises"),
    }


def test_entity_keys():
    assert entity_key("The Danube") == entity_key("danube") == "danube"
    assert entity_key("Amazon (river)") == "amazon"
    assert entity_key("Zürich") == "zurich"


# --- questions --------------------------------------------------------------------------------

CORPUS = [
    {
        "id": "a",
        "text": "Vienna is the capital of Austria. Vienna lies on the Danube. "
        "Vienna has a population of about 2 million. Vienna was founded in 500 BC.",
    },
    {
        "id": "b",
        "text": "Budapest is the capital of Hungary. Budapest lies on the Danube. "
        "Budapest has a population of about 1.7 million. Budapest was founded in 1873.",
    },
    {
        "id": "c",
        "text": "The Danube is a river about 2,850 kilometres long. "
        "The Danube flows into the Black Sea.",
    },
    {
        "id": "d",
        "text": "Austria has a population of about 9.1 million. "
        "Hungary has a population of about 9.6 million. The currency of Austria is the euro.",
    },
]


@pytest.fixture(scope="module")
def memory():
    ctx = context("extract")
    return InMemoryView(build_records(HeuristicExtractor().run(CORPUS, ctx)))


def question_ctx(memory, llm=None):
    ctx = context("questions", llm=llm, memory=memory)
    ctx.config.questions.styles = list(questions.STYLES)
    ctx.config.questions.per_entity = 6
    return ctx


def test_heuristic_questions_are_grammatical_and_pass_the_checks(memory):
    ctx = question_ctx(memory)
    made = questions.HeuristicQuestions().run([memory.get(k) for k in memory.keys()], ctx)
    by_style = {}
    for q in made:
        by_style.setdefault(q["style"], []).append(q)
        assert questions.reject_reason(q, memory) is None
        assert q["supporting"] and q["source_docs"] and q["generator"] == "heuristic"
    assert {"factual", "numeric", "comparison", "multi_hop", "obfuscated"} <= set(by_style)
    for q in made:
        assert q["question"].split()[0] in ("What", "When", "Where", "Which", "How"), q
        assert "None" not in q["question"] and "  " not in q["question"]
    numeric = next(
        q
        for q in by_style["numeric"]
        if {"austria", "hungary"} == {s["entity"] for s in q["supporting"]}
    )
    assert answers_match(numeric["answer"], "500,000")
    # the grammar of the baseline, statement by statement
    vienna, danube = memory.get("vienna"), memory.get("danube")
    rel = {s["relation"]: s for s in vienna["statements"] + danube["statements"]}
    assert questions.ask("Vienna", rel["lies on"]) == "What does Vienna lie on?"
    assert questions.ask("Vienna", rel["was founded in"]) == "When was Vienna founded?"
    assert questions.ask("the Danube", rel["flows into"]) == "What does the Danube flow into?"
    via = {"relation": "is via", "value": {"type": "text", "text": "make style"}}
    assert questions.ask("the easiest way", via) == "What is the easiest way via?"  # not "be"
    # a passive's value that says how ("What are Prereleases identified?" before)
    for relation, value, question in [
        ("are identified", "separately from stable releases", "How are Prereleases identified?"),
        ("can be supplied", "either as arguments", "How can Prereleases be supplied?"),
        ("are", "fully optional", "What are Prereleases?"),  # no passive
        ("supports", "only Python 3", "What does Prereleases support?"),
    ]:
        statement = {"relation": relation, "value": {"type": "text", "text": value}}
        assert questions.ask("Prereleases", statement) == question
    # "in" after a medium's verb names a language, not a place ("Where is X written?" before)
    for relation, question in [
        ("is written in", "What is pyahocorasick written in?"),
        ("is located in", "Where is pyahocorasick located?"),
    ]:
        statement = {"relation": relation, "value": {"type": "entity", "text": "C"}}
        assert questions.ask("pyahocorasick", statement) == question
    austria = memory.get("austria")
    capital = next(s for s in austria["statements"] if s["relation"] == "capital")
    assert questions.ask("Austria", capital) == "What is the capital of Austria?"
    hop = questions.describe_value(rel["is the capital of"], memory)
    assert hop == "the one whose capital is Vienna"
    assert questions.ask(hop, rel["population"]) == (
        "What is the population of the one whose capital is Vienna?"
    )


def write_question(style_and_text):
    def respond(system, user):
        style = user.split("Style: ", 1)[1].split(".", 1)[0]
        gold = user.rsplit("Gold answer: ", 1)[1].strip()
        return json.dumps({"question": style_and_text(style, gold, user), "answer": gold})

    return respond


def test_llm_questions_checks_and_reasons(memory):
    anchors = [memory.get("vienna"), memory.get("budapest")]

    def text(style, gold, user):
        if style == "factual":
            return f"Is the answer {gold}?"  # answer in question
        if style == "obfuscated":
            return "Which river does Vienna lie on, the city I describe?"  # names its entity
        if style == "multi-hop":
            return "What is the length, in kilometres, of the river that flows through Vienna?"
        return "A fine question about these facts?"

    ctx = question_ctx(memory, llm=ScriptedModel(write_question(text)))
    kept = questions.LLMQuestions().run(anchors, ctx)
    reasons = rejects(ctx)
    assert reasons.get("answer in question (factual)") == 2
    assert reasons.get("obfuscated question names its entity (obfuscated)", 0) >= 1
    assert all(q["generator"] == "llm" and q["style"] != "factual" for q in kept)
    assert any(q["style"] == "multi_hop" for q in kept)


def test_llm_question_with_a_disagreeing_answer_is_rejected(memory):
    model = ScriptedModel(lambda s, u: json.dumps({"question": "What is it?", "answer": "Rome"}))
    ctx = question_ctx(memory, llm=model)
    assert questions.LLMQuestions().run([memory.get("vienna")], ctx) == []
    assert sum(rejects(ctx).values()) >= 1
    assert all(r.startswith("model answer disagrees") for r in rejects(ctx))


def test_non_unique_description_is_rejected(memory):
    vienna = memory.get("vienna")
    lies_on = next(s for s in vienna["statements"] if s["relation"] == "lies on")
    capital_of = next(s for s in vienna["statements"] if s["relation"].startswith("is the capital"))
    question = {
        "style": "obfuscated",
        "anchor": "vienna",
        "answer": "500 BC",
        "question": "When was the city that lies on the Danube founded?",
        "supporting": [lies_on],
        "clues": [lies_on],
    }
    assert memory.find(lies_on["relation"], lies_on["value"]) == ["budapest", "vienna"]
    assert not questions.describes_only([lies_on], "vienna", memory)
    assert questions.describes_only([lies_on, capital_of], "vienna", memory)
    assert not questions.describes_only([lies_on, capital_of], "budapest", memory)
    assert questions.reject_reason(question, memory) == "description not unique"
    question["clues"] = [lies_on, capital_of]
    question["question"] = "When was the city that lies on the Danube and is a capital founded?"
    assert questions.reject_reason(question, memory) is None


# --- planning ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def question_set(memory):
    ctx = question_ctx(memory)
    made = questions.HeuristicQuestions().run([memory.get(k) for k in memory.keys()], ctx)
    return {q["style"]: q for q in made if q["anchor"] in ("vienna", "budapest")}


def plan_reply(first_call, verdict="progress"):
    def respond(system, user):
        if "You review the first step" in system:
            return json.dumps({"verdict": verdict, "reason": "scripted"})
        return json.dumps({"analysis": "Find the facts first.", "tool_call": first_call(user)})

    return respond


def test_llm_plans_validated_then_judged(question_set):
    factual = question_set["factual"]
    calls = iter(
        [
            {"name": "search", "arguments": {"query": ["capital of Austria"]}},  # good
            {"name": "search", "arguments": {"query": [f"{factual['answer']}"]}},  # leaked answer
            {"name": "browse", "arguments": {"url": "x"}},  # unknown tool
            {"name": "search", "arguments": {"query": [factual["supporting"][0]["sentence"]]}},
        ]
    )
    model = ScriptedModel(plan_reply(lambda user: next(calls)))
    ctx = context("planning", llm=model, plans_per_question=4)
    kept = planning.LLMPlanning().run([factual], ctx)
    assert len(kept) == 1 and kept[0]["call"]["arguments"]["query"] == ["capital of Austria"]
    assert kept[0]["kind"] == "fas_planning" and "<tool_call>" in kept[0]["text"]
    reasons = rejects(ctx)
    assert reasons["unknown tool"] == 1
    assert (
        reasons["call carries the gold answer"]
        + reasons.get("call carries a supporting sentence", 0)
        == 2
    )
    # the plan prompt and the constrained schema both come from the tool registry
    assert "- search:" in model.prompts[0][0]["content"]
    names = [
        c["properties"]["name"]["const"]
        for c in model.schemas[0]["properties"]["tool_call"]["anyOf"]
    ]
    assert names == ctx.tools.names


def test_llm_plan_judge_rejections_are_counted(question_set):
    q = question_set["factual"]
    model = ScriptedModel(
        plan_reply(
            lambda u: {"name": "search", "arguments": {"query": ["x y"]}}, verdict="no_progress"
        )
    )
    ctx = context("planning", llm=model, plans_per_question=2)
    assert planning.LLMPlanning().run([q], ctx) == []
    assert rejects(ctx) == {"judge: no_progress": 2}


def test_obfuscated_plan_naming_the_hidden_entity_is_rejected(question_set):
    q = question_set["obfuscated"]
    name = q["supporting"][0]["entity_name"]
    model = ScriptedModel(plan_reply(lambda u: {"name": "search", "arguments": {"query": [name]}}))
    ctx = context("planning", llm=model, plans_per_question=1)
    assert planning.LLMPlanning().run([q], ctx) == []
    assert rejects(ctx) == {"call names the hidden entity": 1}


def test_heuristic_plans_pass_the_same_validation(question_set):
    ctx = context("planning", plans_per_question=3)
    kept = planning.HeuristicPlanning().run(list(question_set.values()), ctx)
    assert kept
    for doc in kept:
        q = next(q for q in question_set.values() if q["id"] == doc["question_id"])
        assert ctx.tools.validate_call(doc["call"]) is None
        assert planning.leak_reason({"call": doc["call"], "analysis": doc["analysis"]}, q) is None


# --- reasoning --------------------------------------------------------------------------------


def reasoning_reply(final, equivalent=False):
    def respond(system, user):
        if system.startswith("You judge answers"):
            return json.dumps({"equivalent": equivalent, "reason": "scripted"})
        if system.startswith("Answer the question from your own knowledge"):
            return json.dumps(
                {
                    "sub_questions": ["Which river?"],
                    "a1": "I believe it is long.",
                    "answer": "unsure",
                }
            )
        return json.dumps({"a2": "Checked against the knowledge.", "answer": final})

    return respond


@pytest.mark.parametrize(
    "final, equivalent, kept, reason",
    [
        ("the Black Sea", False, True, None),  # exact after normalisation
        ("Black Sea (Europe)", True, True, None),  # a paraphrase the judge accepts
        ("the North Sea", False, False, "wrong final answer"),
        # a judge that accepts anything is not asked when nothing of the gold is in the answer
        ("I cannot answer that.", True, False, "wrong final answer"),
    ],
)
def test_llm_reasoning_two_calls_and_judge(memory, final, equivalent, kept, reason):
    danube = memory.get("danube")
    flows = next(s for s in danube["statements"] if s["relation"] == "flows into")
    question = {
        "id": "q1",
        "style": "factual",
        "question": "What does the Danube flow into?",
        "answer": "the Black Sea",
        "supporting": [flows],
        "source_docs": ["c"],
    }
    model = ScriptedModel(reasoning_reply(final, equivalent))
    ctx = context("reasoning", llm=model)
    out = reasoning.LLMReasoning().run([question], ctx)
    assert bool(out) is kept
    assert rejects(ctx) == ({reason: 1} if reason else {})
    a1_prompt = model.prompts[0][-1]["content"]
    assert flows["sentence"] not in a1_prompt  # A1 sees the question alone
    assert flows["sentence"] in model.prompts[1][-1]["content"]  # A2 gets the knowledge
    if kept:
        assert out[0]["kind"] == "fas_reasoning" and "<answer>" in out[0]["text"]
    if equivalent and kept:
        assert ctx.counters.counts["reasoning"]["paraphrase accepted by the judge"] == 1
    if final == "I cannot answer that.":
        assert len(model.prompts) == 2  # A1, A2 - no judge call


def test_paraphrased_number_needs_no_judge(memory):
    danube = memory.get("danube")
    length = next(s for s in danube["statements"] if s["relation"] == "length")
    question = {
        "id": "q2",
        "style": "factual",
        "question": "How long is the Danube?",
        "answer": "2,850 kilometres",
        "supporting": [length],
        "source_docs": ["c"],
    }
    model = ScriptedModel(reasoning_reply("2850 km"))
    ctx = context("reasoning", llm=model)
    assert len(reasoning.LLMReasoning().run([question], ctx)) == 1
    assert len(model.prompts) == 2  # A1, A2; the judge was not needed


def test_heuristic_reasoning_keeps_only_right_answers(question_set):
    ctx = context("reasoning")
    kept = reasoning.HeuristicReasoning().run(list(question_set.values()), ctx)
    assert len(kept) == len(question_set)
    wrong = dict(question_set["factual"], answer="Atlantis")
    assert reasoning.HeuristicReasoning().run([wrong], ctx) == []
    assert rejects(ctx) == {"wrong final answer": 1}


def test_a_prompt_longer_than_the_context_is_counted_and_the_rest_of_the_batch_kept():
    from data_synthesis.llm.json_task import STRING, TOO_LONG, object_schema, run_json_task
    from data_synthesis.stage_api import Counters

    class SmallContextModel:  # refuses the whole batch as vLLM does, or the one request a server got
        def generate(self, prompts, seed, schema=None, stop=None):
            if any(len(p[0]["content"]) > 100 for p in prompts):
                raise ValueError(
                    "The decoder prompt (length 1030) plus the number of requested output tokens "
                    "(at least 1) is longer than the maximum model length of 1024."
                )
            return ['{"answer": "Vienna"}' for _ in prompts]

    counters = Counters()
    prompts = [[{"role": "user", "content": text}] for text in ("short", "x" * 200, "also short")]
    results = run_json_task(
        SmallContextModel(),
        prompts,
        object_schema({"answer": STRING}),
        lambda obj: None,
        seed=0,
        retries=2,
        counters=counters,
        stage="reasoning",
    )
    assert results == [{"answer": "Vienna"}, None, {"answer": "Vienna"}]
    assert counters.rejects["reasoning"] == {TOO_LONG: 1}

    class DownServer:
        def generate(self, prompts, seed, schema=None, stop=None):
            raise ConnectionError("http://127.0.0.1:9/v1: gave up after 5 attempts")

    with pytest.raises(ConnectionError, match="gave up"):  # a dead server still stops the run
        run_json_task(
            DownServer(),
            prompts,
            object_schema({"answer": STRING}),
            lambda obj: None,
            seed=0,
            retries=0,
            counters=Counters(),
            stage="reasoning",
        )
