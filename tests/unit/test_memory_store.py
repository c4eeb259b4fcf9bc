"""What keeps a memory task's RSS flat as the corpus grows (data_synthesis/engine/memory_store.py):
a hub entity's record is a stable, bounded sample of its statements, sources and links; each
partition keeps only the rows of the relation index that peers() could choose, and peers() still
returns exactly the sample a scan of every numeric statement would; get/find/links are single
look-ups in the value_index stage's tables."""

from __future__ import annotations

import heapq
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_synthesis.engine.io import iter_jsonl, stable_hash
from data_synthesis.engine.memory_store import (
    PEER_SAMPLE,
    RELATION_ROWS,
    Layout,
    PartitionedMemory,
    build_entities,
    build_lookups,
    entities_file,
    reduce_partition,
    statements_file,
    write_index_rows,
    write_statements,
)
from data_synthesis.engine.shuffle import ShuffleWriter, partition_lines


def _statement(entity: str, source: str, number: float, relation: str = "has a population of"):
    sentence = f"{entity.title()} has a population of {number:g}."
    return {
        "entity": entity,
        "entity_name": entity.title(),
        "extractor": "heuristic",
        "id": f"{source}@0#0",
        "mentions": [f"town {int(number) % 7}"],
        "relation": relation,
        "sentence": sentence,
        "source": source,
        "span": [0, len(sentence)],
        "time": None,
        "value": {"entity": None, "number": number, "text": f"{number:g}", "type": "number"},
    }


def _records(statements, cap=0) -> dict[str, dict]:
    return {record["entity"]: record for record, _, _ in build_entities(statements, cap)[0]}


def test_a_hub_entity_keeps_a_stable_bounded_sample():
    hub = [_statement("europe", f"doc-{i:04d}", i) for i in range(300)]
    small = [_statement("iceland", "doc-9999", 5)]
    by_key = _records(json.loads(json.dumps(s)) for s in hub + small)
    assert len(by_key["europe"]["statements"]) == 300  # no cap: everything kept
    record = _records([json.loads(json.dumps(s)) for s in hub + small], cap=40)["europe"]
    assert len(record["statements"]) == 40 and len(record["sources"]) == 40
    assert record["counts"] == {"statements": 300, "sources": 300, "links": 7}
    assert "counts" not in _records(small, cap=40)["iceland"]  # under the cap: untouched
    shuffled = hub[:]
    random.Random(0).shuffle(shuffled)
    again = _records([json.loads(json.dumps(s)) for s in shuffled + small], cap=40)
    assert again["europe"] == record  # the same sample whatever the input order


def _reference_entities(statements: list[dict], cap: int) -> tuple[list, dict]:
    """The records as the reduce built them until 2026-12-05, every statement of the partition
    held: sorted by source, merged by build_records' rules, mentions added to the links, then
    sampled (cap_record); with each record's value keys and first numeric statement per
    relation, from all its statements. A record without an "is a" statement takes the noun
    most of the partition's statements name it by (the first by source, span, relation and
    entity on a tie: the type hints, since 2026-12-05 sent to the value's partition)."""
    from collections import Counter, defaultdict

    from data_synthesis.memory import (
        _names_a_type,
        alias_key,
        kinds,
        one_entity,
        relation_key,
        value_key,
    )

    def sample(items, key):
        if len(items) <= cap:
            return items
        chosen = set(sorted(range(len(items)), key=lambda i: stable_hash(key(items[i])))[:cap])
        return [item for i, item in enumerate(items) if i in chosen]

    hints = []
    for s in statements:
        target, words = s["value"].get("entity"), s["relation"].split()
        if target and _names_a_type(words) and target != s["entity"]:
            place = (str(s["source"]), s["span"][0], s["relation"], s["entity"])
            hints.append((target, words[-1], place))
    statements = sorted(statements, key=lambda s: str(s["source"]))
    by_key = defaultdict(list)
    for s in statements:
        by_key[s["entity"]].append(s)
    alias = defaultdict(list)
    for key in by_key:
        alias[alias_key(key)].append(key)
    canonical, best = {}, {}  # best: an alias key -> its largest record
    for name, keys in alias.items():
        heads = []  # one record per entity the keys name, the largest first
        for k in sorted(keys, key=lambda k: (len(by_key[k]), -len(k), k), reverse=True):
            said = {
                s["value"]["text"].split()[-1].lower() for s in by_key[k] if s["relation"] == "is a"
            }
            kind = kinds(k, said)
            head = next((h for h, other in heads if one_entity(other, kind)), None)
            if head is None:
                heads.append((head := k, kind))
            canonical[k] = head
        best[name] = heads[0][0]

    def record_of(name):
        return canonical.get(name) or best.get(alias_key(name))

    merged = defaultdict(list)
    for key, group in by_key.items():
        merged[canonical[key]].extend(group)
    out = []
    for key in sorted(merged):
        group = sorted(merged[key], key=lambda s: (s["source"], s["span"][0], s["relation"]))
        for s in group:
            s["entity"] = key
            target = s["value"].get("entity")
            if target and record_of(target):
                s["value"]["entity"] = record_of(target)
        names = Counter(s["entity_name"] for s in group)
        types = Counter(s["value"]["text"].split()[-1] for s in group if s["relation"] == "is a")
        links = {s["value"]["entity"] for s in group if s["value"].get("entity") in merged}
        links |= {m for s in group for m in s.get("mentions") or []}
        links.discard(key)
        record = {
            "id": key,
            "entity": key,
            "entity_name": names.most_common(1)[0][0],
            "names": sorted(names),
            "type": types.most_common(1)[0][0] if types else None,
            "statements": group,
            "sources": sorted({s["source"] for s in group}),
            "links": sorted(links),
        }
        values = {(relation_key(s["relation"]), value_key(s["value"])) for s in group}
        numeric, seen = [], set()
        for s in group:
            if s["value"].get("number") is not None and relation_key(s["relation"]) not in seen:
                seen.add(relation_key(s["relation"]))
                numeric.append(s)
        out.append((record, values, numeric))
    records = {record["entity"]: record for record, _, _ in out}
    inferred = defaultdict(dict)  # record -> noun -> [count, first place]
    for target, noun, place in hints:
        target = record_of(target)
        if target in records and target != record_of(place[-1]):
            entry = inferred[target].setdefault(noun, [0, place])
            entry[0], entry[1] = entry[0] + 1, min(entry[1], place)
    for key, counts in inferred.items():
        if records[key]["type"] is None:
            records[key]["type"] = min(counts, key=lambda n: (-counts[n][0], counts[n][1]))
    for record, _, _ in out:
        counts = {f: len(record[f]) for f in ("statements", "sources", "links")}
        if cap and max(counts.values()) > cap:
            record["statements"] = sample(
                record["statements"], lambda s: f"{s['source']}|{s['span']}|{s['relation']}"
            )
            record["sources"] = sample(record["sources"], str)
            record["links"] = sample(record["links"], str)
            record["counts"] = counts
    return out, canonical


def _random_partition(rng: random.Random, hub_statements: int) -> list[dict]:
    """Statements as extraction writes them, in task order: a hub ("europe", also named
    "europe mountains" - a generic word, so both merge), aliases ("danube" / "danube river"),
    values naming other entities (some of another partition), "is a" and noun relations
    (types), numbers, mentions, ties of (source, span, relation) and a document id seen twice
    apart."""
    entities = ["europe", "europe mountains", "danube", "danube river", "vienna", "iceland"]
    entities += [f"town {i}" for i in range(30)]
    relations = ["is a", "capital", "lies on", "has a population of", "was founded in", "borders"]
    docs = [f"doc-{i:05d}" for i in range(hub_statements // 3 + 20)]
    docs.append(docs[3])  # a document id seen again, later
    statements = []
    for doc in docs:
        for n in range(rng.randint(1, 6)):
            hub = rng.random() < 0.7
            entity = rng.choice(entities[:2] if hub else entities[2:])
            relation = rng.choice(relations)
            value = {"entity": None, "number": None, "text": "", "type": "text"}
            if relation == "is a":
                value["text"] = rng.choice(["a city", "a river", "the continent"])
            elif relation in ("has a population of", "was founded in"):
                number = rng.randint(1, 50)
                value.update(number=number, text=str(number), type="number")
            else:
                target = rng.choice(entities + ["atlantis", "the danube"])
                value.update(entity=target.replace("the ", ""), text=target, type="entity")
            span = [rng.choice([0, 10]), 40]  # some share a span
            statements.append(
                {
                    "entity": entity,
                    "entity_name": entity.title() if rng.random() < 0.8 else entity.upper(),
                    "id": f"{doc}@{n}",
                    "mentions": rng.sample(entities, 2),
                    "relation": relation,
                    "sentence": f"{entity} {relation} {value['text']}.",
                    "source": doc,
                    "span": span,
                    "value": value,
                }
            )
    return statements


@pytest.mark.parametrize("lines", [False, True])  # the reduce hands the builder JSON lines
@pytest.mark.parametrize("cap", [0, 8, 40])
@pytest.mark.parametrize("seed", range(4))
def test_records_built_while_streaming_equal_those_built_from_every_statement(
    cap, seed, lines, monkeypatch
):
    """The reduce builds records with data_synthesis.memory.RecordBuilder, which holds at most
    2 x cap statements of a key (a hub's others are folded into counts, hashes and spilled
    values as they arrive). Records, merges, the value index's keys and the first numeric
    statement of each relation are what holding every statement gave (the reference: the
    code before 2026-12-05), on partitions with hubs, aliases, ties and a document id seen
    twice; with JSON lines, values are spilled every 5 (as a hub's are every 16,384)."""
    from data_synthesis import memory
    from data_synthesis.memory import relation_key

    if lines:
        monkeypatch.setattr(memory, "VALUES_HELD", 5)

    rng = random.Random(seed)
    statements = _random_partition(rng, hub_statements=300)
    expected, expected_canonical = _reference_entities(json.loads(json.dumps(statements)), cap)
    rows = [row for s in statements for row in (s, memory.type_hint(s)) if row]  # as mapped
    given = [json.dumps(r).encode() if lines else json.loads(json.dumps(r)) for r in rows]
    records, canonical = build_entities(given, cap)
    built = list(records)
    assert canonical == expected_canonical
    assert [json.dumps(r, sort_keys=True) for r, _, _ in built] == [
        json.dumps(r, sort_keys=True) for r, _, _ in expected
    ]
    for (_, values, numeric), (_, expected_values, expected_numeric) in zip(built, expected):
        assert set(values) == expected_values and [s for _, s in numeric] == expected_numeric
        assert all(rel == relation_key(s["relation"]) for rel, s in numeric)
    if cap:
        hub = next(r for r, _, _ in built if r["entity"] in ("europe", "europe mountains"))
        assert len(hub["statements"]) == cap < hub["counts"]["statements"]


def test_types_from_values_do_not_depend_on_the_partition_count(tmp_path):
    """(Austria, capital, Vienna) types Vienna a "capital" when Vienna has no "is a"
    statement. Vienna's record is built in Vienna's partition, so the map task sends the
    statement's type hint there; until 2026-12-05 only statements of the same partition
    counted (46 records of the bundled corpus typed this way in one partition, 2 in 16). The
    records' types are the same in 1, 2 and 7 partitions."""
    statements = _random_partition(random.Random(3), hub_statements=200)

    def types(partitions: int) -> dict[str, str | None]:
        out = tmp_path / f"p{partitions}"
        layout = Layout(partitions, 1)
        _write_statements(out, statements, partitions)
        found = {}
        for p in range(partitions):
            reduce_partition(out, p, layout, cap=0)
            for record in iter_jsonl(entities_file(out, p)):
                found[record["entity"]] = record["type"]
        return found

    one = types(1)
    inferred = {e for e, t in one.items() if t == "capital"}  # only values are "capital"s
    assert len(inferred) >= 5
    assert types(2) == one and types(7) == one


def test_a_reduce_that_spills_its_values_writes_the_same_files(tmp_path, monkeypatch):
    """A hub's values (`memory.VALUES_HELD`) and the reduce's value index rows
    (`engine.sort.DistinctRows`) go to temporary files past a number held; spilled every 5 and
    7 rows, the reduce writes byte for byte what it writes holding them all."""
    from data_synthesis import memory
    from data_synthesis.engine.sort import DistinctRows

    statements = _random_partition(random.Random(5), hub_statements=400)
    layout = Layout(2, 3)

    def reduce(out: Path) -> dict[str, bytes]:
        _write_statements(out, statements, layout.partitions)
        for p in range(layout.partitions):
            reduce_partition(out, p, layout, cap=8)
        files = sorted((out / "memory").rglob("p*.*"))
        return {
            str(f.relative_to(out)): f.read_bytes() for f in files if "statements" not in f.parts
        }

    held = reduce(tmp_path / "held")
    monkeypatch.setattr(memory, "VALUES_HELD", 5)
    monkeypatch.setattr(DistinctRows, "ROWS", 7)
    spilled = reduce(tmp_path / "spilled")
    assert held == spilled and any("index_rows" in name for name in held)


@pytest.mark.parametrize("distinct", [False, True])
def test_a_hub_is_built_in_memory_that_does_not_grow_with_its_statements(distinct):
    """A hub's statements stream through the builder: past 2 x cap it keeps a sample and
    aggregates (8 bytes per document for the source count), so peak traced memory for 4x
    the statements grows by under 64 bytes per statement; holding them, as the reduce did
    until 2026-12-05, cost about 1,950 (benchmarks/bench_memory_hub.py: 1.9 GB of RSS for
    800,000 statements). `distinct`: every statement brings a new value and mention, counted
    by 8-byte hashes and the values spilled to disk past 16,384: about 50 bytes per
    statement, where holding them in sets cost about 470 (the code of 3af2fd5)."""
    import tracemalloc

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_memory_hub import _statement

    def build(n: int) -> int:
        tracemalloc.start()
        statements = (json.loads(json.dumps(_statement(i, distinct=distinct))) for i in range(n))
        records, _ = build_entities(statements, cap=64)
        ((record, values, _),) = list(records)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(set(values)) == (n if distinct else 50)
        assert record["counts"]["statements"] == n and len(record["statements"]) == 64
        assert record["counts"]["links"] == (n if distinct else 7) and len(record["links"]) <= 64
        return peak

    build(200)  # imports and caches
    small, large = (16_000, 48_000) if distinct else (4_000, 16_000)
    growth = (build(large) - build(small)) / (large - small)
    assert growth < (100 if distinct else 64), growth


def test_a_partition_s_statements_wait_on_disk_for_their_records():
    """A reduce task's statements (JSON lines) go to a temporary file until their record is
    built, so it holds 24 bytes per statement and what it needs per key. Over 500 entities
    (under the hub threshold, so every statement of a key waits), peak traced memory for 4x
    the statements grows by under 100 bytes per statement; holding their lines, as the
    reduce did until 2026-12-05, cost about 700 (on a 1 GB run's partition of 537,000
    statements, 531 -> 259 MB of RSS: docs/benchmarks.md)."""
    import tracemalloc

    def build(n: int) -> int:
        lines = (  # read as the reduce reads them, a new line at a time
            json.dumps(_statement(f"town {i % 500}", f"doc-{i:07d}", 1000 + i % 50)).encode()
            for i in range(n)
        )
        tracemalloc.start()
        records, _ = build_entities(lines, cap=512)
        built = sum(len(record["statements"]) for record, _, _ in records)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert built == n
        return peak

    build(1_000)  # imports and caches
    growth = (build(80_000) - build(20_000)) / 60_000
    assert growth < 100, growth


def _write_statements(out, statements: list[dict], partitions: int, task: int = 0) -> None:
    """Map task `task`'s statements file, written as the extract stage writes it."""
    with ShuffleWriter(statements_file(out, task), partitions) as files:
        write_statements(files, statements, partitions)
        files.commit()


@pytest.mark.parametrize("index_partitions", [3, 1, 5])  # as many as the memory's, fewer, more
def test_lookups_and_peers_from_partition_samples_equal_a_full_scan(tmp_path, index_partitions):
    partitions, statements = 3, []
    layout = Layout(partitions, index_partitions)
    for i in range(400):
        statements.append(_statement(f"city {i}", f"doc-{i:04d}", 1000 + i))
    _write_statements(tmp_path, statements, partitions)
    for p in range(partitions):
        reduce_partition(tmp_path, p, layout, cap=512)
    for p in range(index_partitions):
        build_lookups(tmp_path, p)
    assert len(list((tmp_path / "memory" / "lookup" / "values").glob("*.jsonl.zst"))) == (
        index_partitions
    )
    kept = sum(
        1
        for path in (tmp_path / "memory" / "index_rows").rglob("p*.jsonl")
        for index in range(index_partitions)
        for _ in partition_lines(path, 2 * index + RELATION_ROWS)
    )
    assert (
        kept <= partitions * PEER_SAMPLE < len(statements)
    )  # (per reduce task)  # the index no longer grows

    def rank(s):
        return (-stable_hash(s["entity"] + "|" + s["id"]), s["entity"], s["id"])

    for limit in (5, 20, PEER_SAMPLE):
        expected = sorted(heapq.nlargest(limit, statements, key=rank), key=lambda s: s["entity"])
        got = PartitionedMemory(tmp_path, layout).peers("has a population of", None, limit)
        assert [g["entity"] for g in got] == [s["entity"] for s in expected]
    view = PartitionedMemory(tmp_path, layout)
    assert view.get("city 7")["statements"][0]["value"]["number"] == 1007
    assert view.get("city 400") is None
    assert view.find("has a population of", "1007") == ["city 7"]
    assert view.find("has a population of", "99") == []
    assert view.count("has a population of", "1007") == 1 and view.has(
        "city 7", "has a population of", "1007"
    )
    assert view.count("has a population of", "99") == 0
    assert not view.has("city 8", "has a population of", "1007")
    assert view.links("city 3") == [f"town {1003 % 7}"]
    assert len(view.keys()) == 400


def test_a_capped_hub_is_still_found_by_every_value(tmp_path):
    """The value index is built before a hub's record is capped: `find` (the check that a
    description picks out one entity) still sees statements the record no longer carries."""
    hub = [_statement("europe", f"doc-{i:04d}", i) for i in range(300)]
    _write_statements(tmp_path, hub, 1)
    assert reduce_partition(tmp_path, 0, Layout(1), cap=40)["statements"] == 300
    build_lookups(tmp_path, 0)
    view = PartitionedMemory(tmp_path, Layout(1))
    kept = {s["value"]["text"] for s in view.get("europe")["statements"]}
    assert len(kept) == 40
    assert all(view.find("has a population of", str(i)) == ["europe"] for i in range(300))
    assert all(view.has("europe", "has a population of", str(i)) for i in range(300))


def test_a_description_is_checked_without_reading_a_common_values_list(tmp_path):
    """describes_only narrows the rarest clue's entities by has() look-ups when another clue is
    common ("is a kind of city": every entity here), never reading that clue's entity list."""
    from data_synthesis.fas.questions import describes_only

    statements = []
    for i in range(300):  # city i and city i + 150 share a population
        statements.append(_statement(f"city {i}", f"doc-{i:04d}", 1000 + i % 150))
        kind = _statement(f"city {i}", f"doc-{i:04d}", 0, relation="is a kind of")
        kind["value"] = {"entity": None, "number": None, "text": "city", "type": "text"}
        statements.append(kind)
    founded = _statement("city 7", "doc-x", 0, relation="was founded in")
    founded["value"] = {"entity": None, "number": 1200, "text": "1200", "type": "date"}
    _write_statements(tmp_path, [*statements, founded], 1)
    reduce_partition(tmp_path, 0, Layout(1), cap=512)
    build_lookups(tmp_path, 0)
    view = PartitionedMemory(tmp_path, Layout(1))
    population, city = statements[14], statements[15]  # city 7's
    assert view.count(city["relation"], city["value"]) == 300
    assert view.find(population["relation"], population["value"]) == ["city 157", "city 7"]
    read, find = [], view.find
    view.find = lambda relation, value: read.append(relation) or find(relation, value)
    assert not describes_only([city, population], "city 7", view)  # city 157 as well
    assert describes_only([city, founded], "city 7", view)
    assert not describes_only([city, founded], "city 157", view)
    assert "is a kind of" not in read
    assert describes_only([population, founded], "city 7", view)  # short lists: read
    assert not describes_only([city], "city 7", view)


def test_fences_are_read_a_chunk_at_a_time():
    """A fence (every step-th element of an on-disk array) equals the strided slice, however
    the range falls on the chunks, and no read asks for more than one chunk."""

    from data_synthesis.engine.lookup import every

    array = np.arange(10_000, dtype=np.uint64) * 3
    for start, stop, step, per_read in [(0, 10_000, 512, 3), (5, 9_999, 7, 2), (0, 0, 4, 1)]:
        reads = []

        def read(a, b, reads=reads):
            reads.append(b - a)
            return array[a:b]

        fence = every(read, start, stop, step, per_read)
        assert fence.tolist() == array[start:stop:step].tolist()
        assert max(reads, default=0) <= step * per_read
        assert len(reads) == -(-(stop - start) // (step * per_read))


def test_look_up_tables_find_every_value_across_block_boundaries(tmp_path):
    """A table look-up reads one block found through the in-memory fence: keys at block edges,
    a key stored many times (spanning blocks) and absent keys all come back right."""
    from data_synthesis.engine.lookup import BLOCK, Tables, write_table

    pairs = [(f"key {i}", i) for i in range(5 * BLOCK + 7)]
    pairs += [("many", 100_000 + i) for i in range(2 * BLOCK + 3)]
    write_table(tmp_path / "t.table.npy", pairs)
    tables = Tables()
    for key, value in pairs[: 5 * BLOCK + 7]:
        assert tables.get(tmp_path / "t.table.npy", key) == [value]
    assert tables.get(tmp_path / "t.table.npy", "many") == [
        100_000 + i for i in range(2 * BLOCK + 3)
    ]
    assert tables.get(tmp_path / "t.table.npy", "absent") == []
    assert tables.get(tmp_path / "missing.table.npy", "key 1") == []


def test_a_key_of_many_rows_is_read_in_part(tmp_path, monkeypatch):
    """A key stored across many blocks (a common word's shards in the search index's terms
    table): its span is found from its first and last blocks, and the numbers in a range by a
    binary search on disk, reading a few blocks whatever the key's size."""
    from data_synthesis.engine import lookup
    from data_synthesis.engine.lookup import BLOCK, Tables, write_table

    rng = np.random.default_rng(3)
    wide = np.unique(rng.integers(0, 1 << 40, 9 * BLOCK + 5)).tolist()
    pairs = [(f"key {i}", i) for i in range(3 * BLOCK)] + [("wide", v) for v in wide]
    path = tmp_path / "t.table.npy"
    write_table(path, pairs)
    tables, read = Tables(), []
    pread = lookup.os.pread
    monkeypatch.setattr(lookup.os, "pread", lambda fd, n, at: read.append(n) or pread(fd, n, at))
    lo, hi = tables.span(path, "wide")
    assert hi - lo == len(wide) and tables.values(path, lo, hi) == wide
    assert tables.values(path, *tables.span(path, "absent")) == []
    for low, high in [(0, 1 << 41), (wide[7], wide[7] + 1), (wide[600], wide[4000]), (5, 5)]:
        read.clear()
        got = tables.between(path, lo, hi, low, high)
        assert got == [v for v in wide if low <= v < high]
        assert sum(read) <= 8 * (2 * BLOCK + len(got)) + 8 * 2 * 14, (low, high)
    for i in range(0, 3 * BLOCK, 97):
        assert tables.get(path, f"key {i}") == [i]


def test_blocks_come_out_in_table_order_with_no_key_cut(tmp_path):
    """in_table_order turns blocks in hash order (equal hashes in any order, a hash's rows
    split between blocks, as SortedRuns yields them) into blocks sorted by (hash, number),
    each hash's rows in one block."""
    from data_synthesis.engine.lookup import in_table_order

    rng = np.random.default_rng(5)
    hashes = np.sort(rng.integers(0, 40, 3000).astype(np.uint64))
    numbers = rng.integers(0, 1 << 20, 3000).astype(np.uint64)
    cuts = sorted(rng.choice(np.arange(1, 3000), 60, replace=False).tolist())
    blocks = [(hashes[a:b], numbers[a:b]) for a, b in zip([0, *cuts], [*cuts, 3000])]
    blocks.insert(5, (np.zeros(0, np.uint64), np.zeros(0, np.uint64)))
    out = list(in_table_order(blocks))
    order = np.lexsort((numbers, hashes))
    assert np.array_equal(np.concatenate([h for h, _ in out]), hashes[order])
    assert np.array_equal(np.concatenate([n for _, n in out]), numbers[order])
    for (before, _), (after, _) in zip(out, out[1:]):
        assert before[-1] < after[0]


def test_look_up_tables_keep_a_bounded_number_of_files_open(tmp_path):
    """Tables keeps the files it reads open, but never more than `files` of them, and closes
    them when dropped; a line is read whole however long, the last one without its newline."""
    import gc
    import os

    from data_synthesis.engine.lookup import LINE_READ, Tables, write_table

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    paths = [tmp_path / f"t{i}.table.npy" for i in range(10)]
    for i, path in enumerate(paths):
        write_table(path, [(f"k{j}", i * 100 + j) for j in range(50)])
    gc.collect()  # (earlier tests' tables, closed when collected)
    before = open_fds()
    tables = Tables(files=4)
    for _ in range(3):
        for i, path in enumerate(paths):
            assert tables.get(path, "k7") == [i * 100 + 7]
            assert open_fds() - before <= 4
    assert open_fds() - before == 4
    lines = [{"n": 1}, {"text": "x" * (5 * LINE_READ)}, {"n": 3}]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines))  # no newline at the end
    offsets = [0]
    for line in lines[:-1]:
        offsets.append(offsets[-1] + len(json.dumps(line)) + 1)
    assert [tables.line(jsonl, at) for at in offsets] == lines
    del tables
    gc.collect()
    assert open_fds() == before


def _value_partition(out, reduce_tasks: int, hub: int) -> None:
    """Value partition 0 as `reduce_tasks` reduce tasks write it (sorted rows): a common value
    ("is a: city") with `hub` entities in all, and 200 rare values."""
    from data_synthesis.memory import relation_key

    rel = relation_key("is a")  # as the reduce tasks key it
    for task in range(reduce_tasks):
        rows = [(rel, "city", f"city {task}-{i:07d}") for i in range(hub // reduce_tasks)]
        rows += [(rel, f"rare {task}-{k}", f"town {task}-{k}") for k in range(200 // reduce_tasks)]
        values = ((0, {"relation": a, "value": b, "entity": c}) for a, b, c in sorted(rows))
        write_index_rows(out, task, values, {}, 1)


def test_the_value_index_streams_a_common_values_list(tmp_path, monkeypatch):
    """A common value's entity list grows with the corpus; the value_index task writes it while
    the reduce tasks' sorted rows stream by, and sorts its tables' pairs on disk, instead of
    holding every (relation, value, entity) of the partition (before: 1.56x RSS from 10 MB to
    1 GB) or 16 bytes per pair and a sort's copies (until 2026-12-05: 665 MB at 1 TB's shape).
    With the writer's chunk and merge memory set small, peak traced memory from 80,000 to
    160,000 entities grows by under 2 bytes per entity, where holding the pairs would cost 16
    (from 20,000 to 80,000 it grows by about 10: the 20 files' ranges grow to their read
    block, 64 KB each), and the look-ups still find, count and check every entity."""
    import tracemalloc

    from data_synthesis.engine.lookup import HashedTableWriter

    monkeypatch.setattr(HashedTableWriter, "CHUNK", 4096)
    monkeypatch.setattr(HashedTableWriter, "MEMORY", 1 << 18)
    peaks = {}
    for hub in (20_000, 80_000, 160_000):
        out = tmp_path / str(hub)
        _value_partition(out, 20, hub)
        tracemalloc.start()
        assert build_lookups(out, 0)["value keys"] == 201
        peaks[hub] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        memory = PartitionedMemory(out, Layout(1))
        assert memory.count("is a", "city") == hub and len(memory.find("is a", "city")) == hub
        assert memory.has("city 19-0000001", "is a", "city")
        assert memory.find("is a", "rare 0-3") == ["town 0-3"]
    assert (peaks[80_000] - peaks[20_000]) / 60_000 < 16, peaks
    assert (peaks[160_000] - peaks[80_000]) / 80_000 < 2, peaks


@pytest.mark.skipif(
    not shutil.which("strace"), reason="bench_value_index.py counts calls by strace"
)
def test_a_value_index_task_opens_each_reduce_file_once(tmp_path):
    """benchmarks/bench_value_index.py with 64 reduce files of 256 KB each for the task (4 read
    blocks per range in a merge of 64): the task opens each reduce task's file once, for its
    value rows and its relation rows, however many blocks its range takes (until 2026-12-05 it
    opened an index beside each file twice and reopened the value file for every block: 10
    per reduce task here; then a value file and a relation file: 2)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_value_index.py"
    command = [sys.executable, str(script), "--reduce-tasks", "64", "--range-kb", "256"]
    done = subprocess.run(
        [*command, "--work", str(tmp_path)], capture_output=True, text=True, check=True
    )
    (result,) = json.loads(done.stdout[: done.stdout.rindex("]") + 1])
    outputs = 40  # the look-up files and tables the task writes, and their sorted runs
    assert result["calls"]["open"] <= 64 + outputs, result
    assert result["calls"]["read"] >= 4 * 64, result  # the range did take several blocks
    assert result["value keys"] > 100 and "| 64 | 256 KB | " in done.stdout


def test_the_hub_benchmark_runs_and_its_reduce_stays_small(tmp_path):
    """benchmarks/bench_memory_hub.py (docs/benchmarks.md, "Hub entities") at 20,000 and 80,000
    statements of one entity: the reduce's peak RSS grows by less than 40 MB for the 60,000
    more (holding them took about 2.3 KB each: 140 MB), and every statement is counted."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_memory_hub.py"
    command = [sys.executable, str(script), "--statements", "20000", "80000"]
    done = subprocess.run(
        [*command, "--work", str(tmp_path)], capture_output=True, text=True, check=True
    )
    small, large = json.loads(done.stdout[: done.stdout.rindex("]") + 1])
    assert small["statements"] == 20_000 and large["statements"] == 80_000
    assert large["peak_rss_mb"] - small["peak_rss_mb"] < 40, done.stdout
    assert "| 80,000 | 1 |" in done.stdout
