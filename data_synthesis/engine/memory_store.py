"""The entity memory as map -> shuffle -> reduce, and a view that loads only what it needs.

    OUT/memory/statements/tTTTTT.jsonl.zst      map: task T's statements grouped by partition
                                                (a hash of the normalised entity), zstd frames
                                                after a header of each partition's byte range
                                                (engine/shuffle.py: one file per task)
    OUT/memory/entities/pPPPPP.jsonl            reduce: entity records of partition P, by key
    OUT/memory/entities/pPPPPP.offsets.json     entity key -> byte offset (keys(): small runs)
    OUT/memory/entities/pPPPPP.table.npy        hash(entity key or alias) -> byte offset, sorted
    OUT/memory/relations/pPPPPP.jsonl           reduce task P's numeric statements by relation
                                                (for comparison / numeric questions: the peers
                                                of an entity), grouped by index partition
    OUT/memory/values/pPPPPP.jsonl              reduce task P's (relation, value, entity) rows,
                                                for find(), grouped by index partition (both
                                                shuffle files, as the statements)
    OUT/memory/lookup/{values,relations}/NNNNN.jsonl (+ .table.npy)   value_index stage, one
                                                task per index partition: the rows above
                                                merged across reduce tasks, one line per key,
                                                found through a hash table
    OUT/memory/lookup/values/NNNNN.members.table.npy   hash(relation|value) -> how many entities
                                                have it; hash(relation|value|entity) -> 1

`Layout` holds the two counts: entity partitions (`engine.partitions`, the reduce tasks) and
index partitions (`engine.index_partitions`, the value_index tasks, by a hash of the relation
and value; at most 1,024 by default, as each of them reads a range of every reduce task's
file).

One reduce task per partition gathers that partition's statements from every map task, merges
them per entity (one record combines statements from many sources) and writes them sorted, so
the result does not depend on how many map tasks there were. Links between entities (a
statement whose value names another entity, or a sentence that mentions one) are stored in each
record; multi-hop walks follow them with one look-up per hop, never a scan.

Every look-up (an entity, the entities with a relation/value, the peers of a relation) is a
binary search in a table of 64-bit key hashes (one block read, engine/lookup.py) and one
seek: its cost does not depend on how many partitions there are or how many a task has
touched. Counting the entities with a relation/value, or asking whether one entity has it, is
a binary search alone: a check that a description picks out one entity starts from its rarest
clue and never reads the entity list of a common value ("is a city"), which grows with the
corpus.
"""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, groupby
from pathlib import Path

from data_synthesis.engine.io import (
    allow_open_files,
    dumps,
    partition_of,
    stable_hash,
    write_json,
)
from data_synthesis.engine.lookup import HashedTableWriter, SizedCache, Tables, write_table
from data_synthesis.engine.shuffle import merge_block, partition_lines, shuffle_files, write_grouped


@dataclass(frozen=True)
class Layout:
    """How the memory is cut: entities into `partitions` (the reduce tasks, by a hash of the
    entity), the value and relation look-ups into `index` (the value_index stage's tasks, by a
    hash of the relation and value; 0: as many as `partitions`)."""

    partitions: int
    index: int = 0

    def __post_init__(self):
        object.__setattr__(self, "index", self.index or self.partitions)


def _memory_module():
    from data_synthesis import memory

    return memory


def partition_key(entity: str) -> str:
    """What decides an entity's partition: its alias key (the key without generic type words),
    so names that build_records merges ("danube river" / "danube") meet in one reduce task."""
    memory = _memory_module()
    alias = getattr(memory, "alias_key", None) or getattr(memory, "_alias_key", None)
    return alias(entity) if alias else entity


def entity_partition(entity: str, partitions: int) -> int:
    return partition_of(partition_key(entity), partitions)


def relation_key(relation: str) -> str:
    memory = _memory_module()
    return memory.relation_key(relation) if hasattr(memory, "relation_key") else relation


def value_key(value: dict) -> str:
    memory = _memory_module()
    if hasattr(memory, "value_key"):
        return memory.value_key(value)
    return str(value.get("entity") or value.get("text"))


# The shuffle files' names under memory/: the statements are compressed (engine/shuffle.py:
# written once, read once in order), the value and relation rows plain (merged side by side)
SUFFIX = {"statements": ".jsonl.zst", "values": ".jsonl", "relations": ".jsonl"}


def statements_file(out: Path, task: int) -> Path:
    """Map task `task`'s statements."""
    return Path(out) / "memory" / "statements" / f"t{task:05d}{SUFFIX['statements']}"


def index_rows_file(out: Path, kind: str, partition: int) -> Path:
    """Reduce task `partition`'s rows of the `kind` ("values", "relations") index."""
    return Path(out) / "memory" / kind / f"p{partition:05d}{SUFFIX[kind]}"


def _streams(out: Path, folder: str, partition: int, merged: bool = False) -> list[Iterator[dict]]:
    """Partition `partition`'s rows in each task's shuffle file of memory/`folder`, one lazy
    stream per file, in task order. Read one after another, a file's range is read by the MiB
    (opened once); `merged` (all read side by side) shares READ_MEMORY among them and holds
    each file open while its range is read, when the open-files limit allows."""
    files = shuffle_files(Path(out) / "memory" / folder, f"*{SUFFIX[folder]}")
    block = merge_block(len(files)) if merged else 1 << 20
    hold = not merged or allow_open_files(len(files))
    return [map(json.loads, partition_lines(path, partition, block, hold)) for path in files]


def _rows(out: Path, folder: str, partition: int) -> Iterator[dict]:
    """Partition `partition`'s rows of every task, in task order."""
    return chain.from_iterable(_streams(out, folder, partition))


def _write_index_rows(out: Path, kind: str, partition: int, groups: dict, partitions: int):
    """Reduce task `partition`'s rows of an index, `groups` {index partition: rows in order}."""
    write_grouped(
        index_rows_file(out, kind, partition),
        partitions,
        (
            (index, (dumps(row) + "\n").encode("utf-8"))
            for index in sorted(groups)
            for row in groups[index]
        ),
    )


def entities_file(out: Path, partition: int) -> Path:
    return Path(out) / "memory" / "entities" / f"p{partition:05d}.jsonl"


def _statement_key(s: dict) -> tuple:
    value = s.get("value") or {}
    return (
        str(s.get("source")),
        tuple(s.get("span") or ()),
        str(s.get("relation")),
        str(value.get("text")),
        str(s.get("sentence")),
    )


def build_entities(statements: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """Entity records from one partition's statements, and every original entity key -> the key
    of the record it was merged into. Uses data_synthesis.memory.build_records (the method's
    merge rules) on statements in a task-count-independent order (by source; a document's
    statements always come from one task, in order)."""
    statements = sorted(statements, key=lambda s: str(s.get("source")))
    original = {id(s): s["entity"] for s in statements}
    memory = _memory_module()
    records = memory.build_records(statements)
    canonical = {}
    for record in records:
        links = set(record.get("links") or [])
        for s in record["statements"]:
            canonical[original[id(s)]] = record["entity"]
            links.update(s.get("mentions") or [])
        links.discard(record["entity"])
        record["links"] = sorted(links)
    return records, canonical


def _sample(items: list, cap: int, key) -> list:
    """At most `cap` of `items` (kept in order), chosen by a stable hash of key(item)."""
    if len(items) <= cap:
        return items
    chosen = set(sorted(range(len(items)), key=lambda i: stable_hash(key(items[i])))[:cap])
    return [item for i, item in enumerate(items) if i in chosen]


def cap_record(record: dict, cap: int) -> None:
    """A hub entity (one named in thousands of documents) keeps a stable sample of `cap`
    statements, sources and links (`counts`: the sizes before), so a record - and every task
    that reads it - stays bounded as the corpus grows. The value and relation indexes are
    built from all its statements before this."""
    counts = {f: len(record[f]) for f in ("statements", "sources", "links")}
    if max(counts.values()) <= cap:
        return
    record["statements"] = _sample(
        record["statements"], cap, lambda s: f"{s.get('source')}|{s.get('span')}|{s['relation']}"
    )
    record["sources"] = _sample(record["sources"], cap, str)
    record["links"] = _sample(record["links"], cap, str)
    record["counts"] = counts  # the sizes before sampling


def reduce_partition(out: Path, partition: int, layout: Layout, cap: int = 0) -> dict:
    """Build partition `partition`'s entity records and offsets, and its entries of the
    relation index (numeric statements, for peers) and the value index (for find), grouped by
    index partition; records are then capped at `cap` statements (cap_record; 0: never)."""
    out = Path(out)
    records, canonical = build_entities(list(_rows(out, "statements", partition)))
    target = entities_file(out, partition)
    target.parent.mkdir(parents=True, exist_ok=True)
    offsets, position = {}, 0
    tmp = target.with_name(target.name + ".tmp")
    relation_rows: dict[int, list[dict]] = defaultdict(list)
    value_rows: dict[int, set] = defaultdict(set)
    with open(tmp, "wb") as handle:
        for record in records:
            seen_relations = set()
            for s in record["statements"]:
                value, rel = s.get("value") or {}, relation_key(s["relation"])
                key = (rel, value_key(value))
                value_rows[partition_of("|".join(key), layout.index)].add((*key, record["entity"]))
                if value.get("number") is not None and rel not in seen_relations:
                    seen_relations.add(rel)
                    relation_rows[partition_of(rel, layout.index)].append(
                        {"relation": rel, "type": record.get("type"), "statement": s}
                    )
            if cap:
                cap_record(record, cap)
            line = (dumps(record) + "\n").encode("utf-8")
            offsets[record["entity"]] = position
            handle.write(line)
            position += len(line)
    relations = {
        r: sorted(_peer_sample(rows), key=lambda row: (row["relation"], row["statement"]["entity"]))
        for r, rows in relation_rows.items()
    }
    _write_index_rows(out, "relations", partition, relations, layout.index)
    values = {
        v: ({"relation": a, "value": b, "entity": c} for a, b, c in sorted(rows))
        for v, rows in value_rows.items()
    }
    _write_index_rows(out, "values", partition, values, layout.index)
    aliases = {k: v for k, v in canonical.items() if k != v}
    write_table(
        table_of(target),
        [*offsets.items(), *((a, offsets[c]) for a, c in aliases.items() if c in offsets)],
    )
    write_json(
        target.with_name(f"p{partition:05d}.offsets.json"),
        {"offsets": offsets},
    )
    tmp.replace(target)
    statements = sum(r.get("counts", {}).get("statements", len(r["statements"])) for r in records)
    multi_source = sum(len(r.get("sources", [])) >= 2 for r in records)
    return {
        "entities": len(records),
        "statements": statements,
        "entities with 2+ sources": multi_source,
    }


def lookup_file(out: Path, kind: str, index: int) -> Path:
    return Path(out) / "memory" / "lookup" / kind / f"{index:05d}.jsonl"


def table_of(path: Path) -> Path:
    return path.with_name(path.name.replace(".jsonl", ".table.npy"))


def build_lookups(out: Path, index: int) -> dict:
    """The value_index stage, one task per partition number: merge every reduce task's rows of
    value partition `index` into one line per (relation, value) with its entities (and its
    membership table: counts and (relation, value, entity) triples), and of
    relation partition `index` into one line per relation with its peer sample (the
    PEER_SAMPLE best of each type over all partitions); each file gets its look-up table."""
    out = Path(out)
    counts = {"value keys": _merge_values(out, index)}
    relations: dict[str, list[dict]] = defaultdict(list)
    for row in _peer_sample(_rows(out, "relations", index)):
        relations[row["relation"]].append(row)
    grouped = [{"relation": relation, "rows": rows} for relation, rows in sorted(relations.items())]
    counts["relations"] = len(grouped)
    _write_lookup(lookup_file(out, "relations", index), grouped, lambda x: x["relation"])
    return counts


def members_of(path: Path) -> Path:
    return path.with_name(path.name.replace(".jsonl", ".members.table.npy"))


def _value_rows(out: Path, index: int) -> Iterator[tuple[str, str, str]]:
    """Value partition `index`'s (relation, value, entity) rows of every reduce task, merged in
    order: each task wrote its rows sorted, so nothing is held but a row per task."""
    streams = (
        ((row["relation"], row["value"], row["entity"]) for row in stream)
        for stream in _streams(out, "values", index, merged=True)
    )
    previous = None
    for row in heapq.merge(*streams):
        if row != previous:
            yield row
        previous = row


def _merge_values(out: Path, index: int) -> int:
    """The values look-up of partition `index`: one line per (relation, value) with its sorted
    entities (as `dumps` writes it), its table, and the membership table (each key's count and
    each (relation, value, entity) triple). Lines are written while the rows stream by, and the
    tables' pairs are sorted on disk (HashedTableWriter): a common value's list ("is a: city",
    which grows with the corpus) is never held, nor the partition's rows (they were: 1.56x RSS
    from 10 MB to 1 GB), nor a pair per row (16 bytes each and a sort's copies: 665 MB for the
    1 GiB of rows a task merges at 1 TB with 1,024 index partitions). Returns the number of
    keys."""
    path = lookup_file(out, "values", index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    table, members = HashedTableWriter(table_of(path)), HashedTableWriter(members_of(path))
    keys = 0
    with open(tmp, "wb") as handle:
        for (relation, value), group in groupby(_value_rows(out, index), key=lambda r: r[:2]):
            key = f"{relation}|{value}"
            table.add(stable_hash(key), handle.tell())
            handle.write(b'{"entities": [')
            count = 0
            for *_, entity in group:
                handle.write((", " if count else "").encode() + _json(entity))
                members.add(stable_hash(f"{key}|{entity}"), 1)
                count += 1
            handle.write(b'], "relation": ' + _json(relation) + b', "value": ' + _json(value))
            handle.write(b"}\n")
            members.add(stable_hash(key), count)
            keys += 1
    tmp.replace(path)
    table.close()
    members.close()
    return keys


def _json(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode("utf-8")


def _write_lookup(path: Path, rows: list[dict], key) -> None:
    offsets = _write_lines(path, rows)
    write_table(table_of(path), [(key(row), offset) for row, offset in zip(rows, offsets)])


RECORD_CACHE_STATEMENTS = 20_000  # statements of the records get() keeps (hubs carry 512)
PEER_CACHE_STATEMENTS = 20_000  # statements of the peer samples peers() keeps (relations x types)
FOUND_CACHE_NAMES = 200_000  # entity names the find() cache holds at most (~20 MB)
PEER_SAMPLE = 64  # rows per (relation, type) a partition keeps for peers(); limit <= this


def _peer_rank(statement: dict) -> tuple:
    """peers()'s order: the largest first (a stable hash of entity and statement id)."""
    sid = str(statement.get("id", ""))
    return (-stable_hash(statement["entity"] + "|" + sid), statement["entity"], sid)


def _peer_sample(rows) -> list[dict]:
    """The PEER_SAMPLE rows of each (relation, type) that peers() could choose, best first: its
    sample is the top of that order over all partitions, so it is inside the union of each
    partition's top - exact, while a common relation's rows no longer grow with the corpus.
    `rows` may be a stream (the value_index stage reads every reduce task's rows): a bounded
    heap per group keeps the memory independent of how many rows there are."""
    heaps: dict[tuple, list] = defaultdict(list)
    for n, row in enumerate(rows):
        heap = heaps[(row["relation"], str(row["type"]))]
        item = (_peer_rank(row["statement"]), n, row)
        if len(heap) < PEER_SAMPLE:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    return [row for _, heap in sorted(heaps.items()) for *_, row in sorted(heap, reverse=True)]


def _write_lines(path: Path, rows: list[dict]) -> list[int]:
    """Write rows as JSONL (atomically); returns each row's byte offset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    offsets = []
    with open(tmp, "wb") as handle:
        for row in rows:
            offsets.append(handle.tell())
            handle.write((dumps(row) + "\n").encode("utf-8"))
    tmp.replace(path)
    return offsets


def _size(record: dict | None) -> int:
    return 1 + len(record["statements"]) if record else 1


class PartitionedMemory:
    """data_synthesis.stage_api.MemoryView over a reduced and indexed memory directory.

    Every look-up is a binary search in a look-up table and one seek (see the module
    doc); recent records and peer samples are cached. Nothing reads the memory whole."""

    def __init__(self, out: Path, layout: Layout):
        self.out, self.layout = Path(out), layout
        self._tables = Tables()
        self._records = SizedCache(RECORD_CACHE_STATEMENTS, _size)
        self._peers = SizedCache(PEER_CACHE_STATEMENTS, len)  # (relation, type, limit) -> sample
        self._found = SizedCache(FOUND_CACHE_NAMES, lambda names: 1 + len(names))  # common values
        self._files: dict[tuple[str, int], tuple[Path, Path]] = {}
        self._member_tables: dict[int, Path] = {}

    def _files_of(self, kind: str, index: int) -> tuple[Path, Path]:
        """Partition `index`'s JSONL file of `kind` ("entities", "values", "relations") and its
        look-up table; kept, building paths is a noticeable share of a look-up."""
        files = self._files.get((kind, index))
        if files is None:
            if kind == "entities":
                path = entities_file(self.out, index)
            else:
                path = lookup_file(self.out, kind, index)
            files = self._files[(kind, index)] = (path, table_of(path))
        return files

    def _line(self, files: tuple[Path, Path], key: str, match) -> dict | None:
        path, table = files
        for offset in self._tables.get(table, key):
            row = self._tables.line(path, offset)
            if match(row):
                return row
        return None

    def get(self, entity: str) -> dict | None:
        def read() -> dict | None:
            files = self._files_of("entities", entity_partition(entity, self.layout.partitions))
            # an alias's hash leads to its canonical record; 64-bit hashes do not collide
            return self._line(files, entity, lambda row: True)

        return self._records.get(entity, read)

    def __contains__(self, entity: str) -> bool:
        return self.get(entity) is not None

    def keys(self) -> list[str]:
        """Every entity key (reads every partition's offsets: small runs and tests only)."""
        keys = []
        for p in range(self.layout.partitions):
            path = entities_file(self.out, p).with_name(f"p{p:05d}.offsets.json")
            if path.exists():
                keys += json.loads(path.read_text(encoding="utf-8"))["offsets"]
        return sorted(keys)

    def _value(self, relation: str, value: dict | str) -> tuple[str, str, int]:
        """The keys of a (relation, value) and the partition of its look-up files."""
        rel = relation_key(relation)
        val = value if isinstance(value, str) else value_key(value)
        return rel, val, partition_of(f"{rel}|{val}", self.layout.index)

    def _members(self, index: int) -> Path:
        if index not in self._member_tables:
            self._member_tables[index] = members_of(self._files_of("values", index)[0])
        return self._member_tables[index]

    def count(self, relation: str, value: dict | str) -> int:
        """How many entities have a statement of this relation and value (no list is read)."""
        rel, val, index = self._value(relation, value)
        return sum(self._tables.get(self._members(index), f"{rel}|{val}"))

    def has(self, entity: str, relation: str, value: dict | str) -> bool:
        """Whether `entity` has a statement of this relation and value (no list is read)."""
        rel, val, index = self._value(relation, value)
        return bool(self._tables.get(self._members(index), f"{rel}|{val}|{entity}"))

    def find(self, relation: str, value: dict | str) -> list[str]:
        """Entities with a statement of this relation and value (one look-up)."""
        rel, val, index = self._value(relation, value)

        def read() -> list[str]:
            files = self._files_of("values", index)
            row = self._line(
                files, f"{rel}|{val}", lambda r: (r["relation"], r["value"]) == (rel, val)
            )
            return row["entities"] if row else []

        return list(self._found.get((rel, val), read))

    def links(self, entity: str) -> list[str]:
        record = self.get(entity)
        return list(record["links"]) if record else []

    def peers(self, relation: str, entity_type: str | None, limit: int = 50) -> list[dict]:
        """Numeric statements of `relation` (same type when given), at most `limit`, chosen by a
        stable hash of the entity (a spread sample, the same in every task), sorted by entity."""
        if limit > PEER_SAMPLE:
            raise ValueError(f"peers: limit {limit} > the {PEER_SAMPLE} rows a partition keeps")
        relation = relation_key(relation)

        def read() -> list[dict]:
            files = self._files_of("relations", partition_of(relation, self.layout.index))
            row = self._line(files, relation, lambda r: r["relation"] == relation)
            rows = [
                r["statement"]
                for r in (row["rows"] if row else [])
                if not entity_type or r["type"] == entity_type
            ]
            best = heapq.nlargest(limit, rows, key=_peer_rank)
            return [
                {"entity": s["entity"], "statement": s}
                for s in sorted(best, key=lambda s: _peer_rank(s)[1:])
            ]

        return self._peers.get((relation, entity_type, limit), read)
