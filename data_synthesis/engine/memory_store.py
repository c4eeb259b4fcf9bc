"""The entity memory as map -> shuffle -> reduce, and a view that loads only what it needs.

    OUT/memory/statements/tTTTTT.jsonl.zst      map: task T's statements grouped by partition
                                                (a hash of the normalised entity), zstd frames
                                                after a header of each partition's byte range
                                                (engine/shuffle.py: one file per task)
    OUT/memory/entities/pPPPPP.jsonl.zst        reduce: entity records of partition P, by key,
                                                in zstd frames of ~16 KiB of text (a framed
                                                file, engine/io.py's FramedLines)
    OUT/memory/entities/pPPPPP.table.npy        hash(entity key or alias) -> place, sorted
                                                (a place: the frame's byte offset and the
                                                line's offset in its text)
    OUT/memory/index_rows/pPPPPP.jsonl          reduce task P's rows of the two look-ups, a
                                                shuffle file as the statements: for index
                                                partition I, its (relation, value, entity) rows
                                                (for find()) then its numeric statements by
                                                relation (for comparison / numeric questions:
                                                the peers of an entity), side by side
    OUT/memory/lookup/{values,relations}/NNNNN.jsonl.zst (+ .table.npy)   value_index stage, one
                                                task per index partition: the rows above
                                                merged across reduce tasks, one line per key,
                                                found through a hash table (framed files)
    OUT/memory/lookup/values/NNNNN.members.table.npy   hash(relation|value) -> how many entities
                                                have it; hash(relation|value|entity) -> 1

`FORMAT` names this layout of the files; it is part of a run's fingerprint, so a run directory
written by code with another layout refuses to resume instead of reading what is not there
(until 2026-12-05 the value and relation rows were two files per reduce task, memory/values/ and
memory/relations/: two opens per reduce task for each value_index task).

`Layout` holds the two counts: entity partitions (`engine.partitions`, the reduce tasks) and
index partitions (`engine.index_partitions`, the value_index tasks, by a hash of the relation
and value; at most 1,024 by default, as each of them reads a range of every reduce task's
file).

One reduce task per partition gathers that partition's statements from every map task, merges
them per entity (one record combines statements from many sources) and writes them sorted, so
the result does not depend on how many map tasks there were. The statements stream through
data_synthesis.memory.RecordBuilder: a hub entity's record keeps a sample, and past twice its
size the builder keeps only that sample and aggregates, so a hub's statements - which grow
with the corpus - are never all held; the others are held as JSON lines, and records are
written as they are built. Links between entities (a statement whose value names another
entity, or a sentence that mentions one) are stored in each record; multi-hop walks follow
them with one look-up per hop, never a scan.

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
    FramedLines,
    allow_open_files,
    dumps,
    iter_jsonl,
    partition_of,
    stable_hash,
)
from data_synthesis.engine.lookup import HashedTableWriter, SizedCache, Tables, write_table
from data_synthesis.engine.shuffle import (
    ShuffleFile,
    ShuffleWriter,
    merge_block,
    partition_lines,
    shuffle_files,
    write_grouped,
)
from data_synthesis.engine.sort import DistinctRows

# the memory's shuffle files' layout (run fingerprint); 2: one index_rows file; 3: the
# statements files also carry type hints, each in its value's partition; 4: the entity records
# and look-up rows in framed zstd files
FORMAT = 4


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
SUFFIX = {"statements": ".jsonl.zst", "index_rows": ".jsonl"}
VALUE_ROWS, RELATION_ROWS = 0, 1  # index partition I's rows are shuffle partitions 2I and 2I + 1


def statements_file(out: Path, task: int) -> Path:
    """Map task `task`'s statements."""
    return Path(out) / "memory" / "statements" / f"t{task:05d}{SUFFIX['statements']}"


def write_statements(files: ShuffleWriter, statements, partitions: int) -> None:
    """The map side: each statement to its entity's partition, and what it says of its
    value's type (`memory.type_hint`) to the value's, where the value's record is built."""
    type_hint = _memory_module().type_hint
    for statement in statements:
        files.write(entity_partition(statement["entity"], partitions), _line(statement))
        hint = type_hint(statement)
        if hint:
            files.write(entity_partition(hint["entity"], partitions), _line(hint))


def _line(row: dict) -> bytes:
    return (dumps(row) + "\n").encode("utf-8")


def index_rows_file(out: Path, partition: int) -> Path:
    """Reduce task `partition`'s rows of the value and relation look-ups."""
    return Path(out) / "memory" / "index_rows" / f"p{partition:05d}{SUFFIX['index_rows']}"


def _statements(out: Path, partition: int) -> Iterator[bytes]:
    """Partition `partition`'s statements (JSON lines) of every map task, in task order: one
    file after another, each range read by the MiB in one open."""
    files = shuffle_files(Path(out) / "memory" / "statements", f"*{SUFFIX['statements']}")
    return chain.from_iterable(partition_lines(path, partition, hold=True) for path in files)


def write_index_rows(out: Path, partition: int, values, relations: dict, index: int):
    """Reduce task `partition`'s rows of the look-ups in one shuffle file of 2 x `index`
    partitions: index partition I's value rows, then its relation rows, so a value_index task
    reads both in one open. `values`: (index partition, row) in order; `relations`: {index
    partition: rows in order}."""
    value_rows = ((2 * i + VALUE_ROWS, row) for i, row in values)
    relation_rows = (
        (2 * i + RELATION_ROWS, row) for i in sorted(relations) for row in relations[i]
    )
    write_grouped(
        index_rows_file(out, partition),
        2 * index,
        (
            (group, _line(row))
            for group, row in heapq.merge(value_rows, relation_rows, key=lambda item: item[0])
        ),
    )


def entities_file(out: Path, partition: int) -> Path:
    return Path(out) / "memory" / "entities" / f"p{partition:05d}.jsonl.zst"


def build_entities(statements, cap: int = 0) -> tuple[Iterator[tuple], dict[str, str]]:
    """Entity records from one partition's statements (dicts or their JSON lines, any
    iterable, read once; lines go to a temporary file until their record is built, 24 bytes
    each held), handed out one at a time, each with what the value index needs of all its
    statements ((relation key, value key) pairs, the first numeric statement of each
    relation); and every original
    entity key -> the key of the record it was merged into. data_synthesis.memory's
    RecordBuilder applies the method's merge rules; a record's links also name the entities
    its documents mention. With `cap`, a hub entity keeps a stable sample of `cap`
    statements, sources and links (`counts`: the sizes before), and the builder holds about
    twice that many of its statements, not all, and 8 bytes per document and mention of it:
    the indexes still see every one."""
    builder = _memory_module().RecordBuilder(cap)
    for statement in statements:
        line = statement if isinstance(statement, bytes) else None
        parsed = json.loads(line) if line is not None else statement
        if "hint" in parsed:  # a type hint sent here by the map task (memory.type_hint)
            builder.add_hint(parsed)
        else:
            builder.add(parsed, line)
    records = builder.records()
    return records, builder.merged_into


def reduce_partition(out: Path, partition: int, layout: Layout, cap: int = 0) -> dict:
    """Build partition `partition`'s entity records and their table, and its entries of the
    relation index (numeric statements, for peers) and the value index (for find), grouped by
    index partition; a hub's record keeps a sample of `cap` statements (0: all). Records are
    written as they are built, none held."""
    out = Path(out)
    records, canonical = build_entities(_statements(out, partition), cap)
    target = entities_file(out, partition)
    target.parent.mkdir(parents=True, exist_ok=True)
    places = {}
    counts = {"entities": 0, "statements": 0, "entities with 2+ sources": 0}
    tmp = target.with_name(target.name + ".tmp")
    peers: dict[int, PeerSample] = defaultdict(PeerSample)
    value_rows = DistinctRows()  # (index partition, relation, value, entity)
    with open(tmp, "wb") as handle:
        lines = FramedLines(handle)
        for record, values, numeric in records:
            for key in values:
                value_rows.add((partition_of("|".join(key), layout.index), *key, record["entity"]))
            for rel, s in numeric:
                peers[partition_of(rel, layout.index)].add(
                    {"relation": rel, "type": record.get("type"), "statement": s}
                )
            places[record["entity"]] = lines.place()
            lines.write(_line(record))
            counts["entities"] += 1
            counts["statements"] += record.get("counts", {}).get(
                "statements", len(record["statements"])
            )
            counts["entities with 2+ sources"] += len(record.get("sources", [])) >= 2
        lines.close()
    relations = {
        r: sorted(sample.rows(), key=lambda row: (row["relation"], row["statement"]["entity"]))
        for r, sample in peers.items()
    }
    values = ((v, {"relation": a, "value": b, "entity": c}) for v, a, b, c in value_rows.sorted())
    write_index_rows(out, partition, values, relations, layout.index)
    aliases = {k: v for k, v in canonical.items() if k != v}
    write_table(
        table_of(target),
        [*places.items(), *((a, places[c]) for a, c in aliases.items() if c in places)],
    )
    tmp.replace(target)
    return counts


def lookup_file(out: Path, kind: str, index: int) -> Path:
    return Path(out) / "memory" / "lookup" / kind / f"{index:05d}.jsonl.zst"


def _beside(path: Path, suffix: str) -> Path:
    """A file beside a framed `.jsonl.zst`: its table (".table.npy"), its members."""
    return path.with_name(path.name.removesuffix(".jsonl.zst") + suffix)


def table_of(path: Path) -> Path:
    return _beside(path, ".table.npy")


def build_lookups(out: Path, index: int) -> dict:
    """The value_index stage, one task per index partition: merge every reduce task's value
    rows of partition `index` into one line per (relation, value) with its entities (and its
    membership table: counts and (relation, value, entity) triples), and its relation rows
    into one line per relation with its peer sample (the PEER_SAMPLE best of each type over
    all partitions); each file gets its look-up table. The value rows are merged side by
    side, READ_MEMORY shared among the files; each file is held open from its value rows to
    its relation rows (read after the merge, in task order) when the open-files limit allows
    a file per reduce task - one open per reduce task's file."""
    out = Path(out)
    paths = shuffle_files(out / "memory" / "index_rows", f"*{SUFFIX['index_rows']}")
    block, hold = merge_block(len(paths)), allow_open_files(len(paths))
    files = [ShuffleFile(path, hold) for path in paths]
    try:
        counts = {"value keys": _merge_values(out, index, files, block)}
        peers = _peer_sample(_relation_rows(files, index, block))
    finally:
        for file in files:
            file.close()
    relations: dict[str, list[dict]] = defaultdict(list)
    for row in peers:
        relations[row["relation"]].append(row)
    grouped = [{"relation": relation, "rows": rows} for relation, rows in sorted(relations.items())]
    counts["relations"] = len(grouped)
    _write_lookup(lookup_file(out, "relations", index), grouped, lambda x: x["relation"])
    return counts


def members_of(path: Path) -> Path:
    return _beside(path, ".members.table.npy")


def _relation_rows(files: list[ShuffleFile], index: int, block: int) -> Iterator[dict]:
    """Index partition `index`'s relation rows of every reduce task, in task order; each file
    closed once read."""
    for file in files:
        yield from map(json.loads, file.lines(2 * index + RELATION_ROWS, block))
        file.close()


def _value_rows(files: list[ShuffleFile], index: int, block: int) -> Iterator[tuple[str, str, str]]:
    """Index partition `index`'s (relation, value, entity) rows of every reduce task, merged in
    order: each task wrote its rows sorted, so nothing is held but a block per task."""
    streams = (
        ((row["relation"], row["value"], row["entity"]) for row in map(json.loads, lines))
        for lines in (file.lines(2 * index + VALUE_ROWS, block) for file in files)
    )
    previous = None
    for row in heapq.merge(*streams):
        if row != previous:
            yield row
        previous = row


def _merge_values(out: Path, index: int, files: list[ShuffleFile], block: int) -> int:
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
        lines = FramedLines(handle)
        rows = _value_rows(files, index, block)
        for (relation, value), group in groupby(rows, key=lambda r: r[:2]):
            key = f"{relation}|{value}"
            table.add(stable_hash(key), lines.place())
            lines.write(b'{"entities": [')
            count = 0
            for *_, entity in group:
                lines.write((", " if count else "").encode() + _json(entity))
                members.add(stable_hash(f"{key}|{entity}"), 1)
                count += 1
            lines.write(b'], "relation": ' + _json(relation) + b', "value": ' + _json(value))
            lines.write(b"}\n")
            members.add(stable_hash(key), count)
            keys += 1
        lines.close()
    tmp.replace(path)
    table.close()
    members.close()
    return keys


def _json(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode("utf-8")


def _write_lookup(path: Path, rows: list[dict], key) -> None:
    places = _write_lines(path, rows)
    write_table(table_of(path), [(key(row), place) for row, place in zip(rows, places)])


RECORD_CACHE_STATEMENTS = 20_000  # statements of the records get() keeps (hubs carry 512)
PEER_CACHE_STATEMENTS = 20_000  # statements of the peer samples peers() keeps (relations x types)
FOUND_CACHE_NAMES = 200_000  # entity names the find() cache holds at most (~20 MB)
PEER_SAMPLE = 64  # rows per (relation, type) a partition keeps for peers(); limit <= this


def _peer_rank(statement: dict) -> tuple:
    """peers()'s order: the largest first (a stable hash of entity and statement id)."""
    sid = str(statement.get("id", ""))
    return (-stable_hash(statement["entity"] + "|" + sid), statement["entity"], sid)


class PeerSample:
    """The PEER_SAMPLE rows of each (relation, type) that peers() could choose, best first: its
    sample is the top of that order over all partitions, so it is inside the union of each
    partition's top - exact, while a common relation's rows no longer grow with the corpus.
    Rows are added one at a time (a reduce task's records as they are built, the value_index
    stage's rows of every reduce task): a bounded heap per group keeps the memory
    independent of how many rows there are."""

    def __init__(self):
        self._heaps: dict[tuple, list] = defaultdict(list)
        self._added = 0

    def add(self, row: dict) -> None:
        heap = self._heaps[(row["relation"], str(row["type"]))]
        item = (_peer_rank(row["statement"]), self._added, row)
        self._added += 1
        if len(heap) < PEER_SAMPLE:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)

    def rows(self) -> list[dict]:
        heaps = sorted(self._heaps.items())
        return [row for _, heap in heaps for *_, row in sorted(heap, reverse=True)]


def _peer_sample(rows) -> list[dict]:
    sample = PeerSample()
    for row in rows:
        sample.add(row)
    return sample.rows()


def _write_lines(path: Path, rows: list[dict]) -> list[int]:
    """Write rows as a framed JSONL (atomically); returns each row's place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    places = []
    with open(tmp, "wb") as handle:
        lines = FramedLines(handle)
        for row in rows:
            places.append(lines.place())
            lines.write(_line(row))
        lines.close()
    tmp.replace(path)
    return places


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
        """Every entity key (reads every partition's records: small runs and tests only)."""
        keys = []
        for p in range(self.layout.partitions):
            path = entities_file(self.out, p)
            if path.exists():
                keys += (record["entity"] for record in iter_jsonl(path))
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
