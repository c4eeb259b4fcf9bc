"""The entity memory as map -> shuffle -> reduce, and a view that loads only what it needs.

    OUT/memory/statements/pPPPPP/tTTTTT.jsonl   map: statements of task T whose normalised entity
                                                hashes to partition P
    OUT/memory/entities/pPPPPP.jsonl            reduce: entity records of partition P, by key
    OUT/memory/entities/pPPPPP.offsets.json     entity key -> byte offset in that file
    OUT/memory/relations/rRRRRR/pPPPPP.jsonl    numeric statements by relation (for comparison /
                                                numeric questions: the peers of an entity)

One reduce task per partition gathers that partition's statements from every map task, merges
them per entity (one record combines statements from many sources) and writes them sorted, so
the result does not depend on how many map tasks there were. Links between entities (a
statement whose value names another entity, or a sentence that mentions one) are stored in each
record; multi-hop walks follow them with one look-up per hop, never a scan.
"""

from __future__ import annotations

import heapq
import json
from collections import OrderedDict, defaultdict
from pathlib import Path

from data_synthesis.engine.io import dumps, iter_jsonl, partition_of, stable_hash, write_json


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


def statements_file(out: Path, partition: int, task: int) -> Path:
    return Path(out) / "memory" / "statements" / f"p{partition:05d}" / f"t{task:05d}.jsonl"


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


def reduce_partition(out: Path, partition: int, partitions: int) -> dict:
    """Build partition `partition`'s entity records and offsets, and its entries of the
    relation index (numeric statements, for peers) and the value index (for find)."""
    out = Path(out)
    folder = out / "memory" / "statements" / f"p{partition:05d}"
    files = sorted(folder.glob("t*.jsonl")) if folder.exists() else []
    records, canonical = build_entities([s for f in files for s in iter_jsonl(f)])
    target = entities_file(out, partition)
    target.parent.mkdir(parents=True, exist_ok=True)
    offsets, position = {}, 0
    tmp = target.with_name(target.name + ".tmp")
    relation_rows: dict[int, list[dict]] = defaultdict(list)
    value_rows: dict[int, set] = defaultdict(set)
    with open(tmp, "wb") as handle:
        for record in records:
            line = (dumps(record) + "\n").encode("utf-8")
            offsets[record["entity"]] = position
            handle.write(line)
            position += len(line)
            seen_relations = set()
            for s in record["statements"]:
                value, rel = s.get("value") or {}, relation_key(s["relation"])
                key = (rel, value_key(value))
                value_rows[partition_of("|".join(key), partitions)].add((*key, record["entity"]))
                if value.get("number") is not None and rel not in seen_relations:
                    seen_relations.add(rel)
                    relation_rows[partition_of(rel, partitions)].append(
                        {"relation": rel, "type": record.get("type"), "statement": s}
                    )
    for r, rows in relation_rows.items():
        _write_lines(
            out / "memory" / "relations" / f"r{r:05d}" / f"p{partition:05d}.jsonl",
            sorted(rows, key=lambda row: (row["relation"], row["statement"]["entity"])),
        )
    for v, rows in value_rows.items():
        _write_lines(
            out / "memory" / "values" / f"v{v:05d}" / f"p{partition:05d}.jsonl",
            [{"relation": a, "value": b, "entity": c} for a, b, c in sorted(rows)],
        )
    aliases = {k: v for k, v in canonical.items() if k != v}
    write_json(
        target.with_name(f"p{partition:05d}.offsets.json"),
        {"offsets": offsets, "aliases": aliases},
    )
    tmp.replace(target)
    return {"entities": len(records), "statements": sum(len(r["statements"]) for r in records)}


def _write_lines(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(dumps(row) + "\n")
    tmp.replace(path)


class PartitionedMemory:
    """data_synthesis.stage_api.MemoryView over a reduced memory directory.

    Looks up one entity by reading its partition's offsets (kept for a few partitions, LRU) and
    seeking to its line; nothing reads the memory whole."""

    def __init__(self, out: Path, partitions: int, cached_partitions: int = 8):
        self.out, self.partitions = Path(out), partitions
        self._offsets: OrderedDict[int, dict] = OrderedDict()
        self._cached = cached_partitions
        self._records: OrderedDict[str, dict | None] = OrderedDict()
        self._peers: dict[tuple, list[dict]] = {}
        self._values: OrderedDict[int, dict] = OrderedDict()

    def _partition_offsets(self, partition: int) -> dict:
        if partition in self._offsets:
            self._offsets.move_to_end(partition)
            return self._offsets[partition]
        path = entities_file(self.out, partition).with_name(f"p{partition:05d}.offsets.json")
        offsets = (
            json.loads(path.read_text(encoding="utf-8"))
            if path.exists()
            else {"offsets": {}, "aliases": {}}
        )
        self._offsets[partition] = offsets
        if len(self._offsets) > self._cached:
            self._offsets.popitem(last=False)
        return offsets

    def get(self, entity: str) -> dict | None:
        if entity in self._records:
            self._records.move_to_end(entity)
            return self._records[entity]
        partition = entity_partition(entity, self.partitions)
        index = self._partition_offsets(partition)
        offset = index["offsets"].get(index["aliases"].get(entity, entity))
        record = None
        if offset is not None:
            with open(entities_file(self.out, partition), "rb") as handle:
                handle.seek(offset)
                record = json.loads(handle.readline())
        self._records[entity] = record
        if len(self._records) > 4096:
            self._records.popitem(last=False)
        return record

    def __contains__(self, entity: str) -> bool:
        return self.get(entity) is not None

    def keys(self) -> list[str]:
        """Every entity key (reads every partition's offsets: small runs and tests only)."""
        return sorted(
            k for p in range(self.partitions) for k in self._partition_offsets(p)["offsets"]
        )

    def find(self, relation: str, value: dict | str) -> list[str]:
        """Entities with a statement of this relation and value (the value index; one
        partition of it is read per look-up, cached)."""
        rel = relation_key(relation)
        val = value if isinstance(value, str) else value_key(value)
        v = partition_of(f"{rel}|{val}", self.partitions)
        if v not in self._values:
            table: dict[tuple, list[str]] = defaultdict(list)
            folder = self.out / "memory" / "values" / f"v{v:05d}"
            for path in sorted(folder.glob("p*.jsonl")) if folder.exists() else []:
                for row in iter_jsonl(path):
                    table[(row["relation"], row["value"])].append(row["entity"])
            self._values[v] = table
            if len(self._values) > self._cached:
                self._values.popitem(last=False)
        return sorted(self._values[v].get((rel, val), []))

    def links(self, entity: str) -> list[str]:
        record = self.get(entity)
        return list(record["links"]) if record else []

    def peers(self, relation: str, entity_type: str | None, limit: int = 50) -> list[dict]:
        """Numeric statements of `relation` (same type when given), at most `limit`, chosen by a
        stable hash of the entity (a spread sample, the same in every task), sorted by entity."""
        relation = relation_key(relation)
        key = (relation, entity_type, limit)
        if key not in self._peers:
            r = partition_of(relation, self.partitions)
            folder = self.out / "memory" / "relations" / f"r{r:05d}"
            best: list[tuple[int, str, str, dict]] = []
            for path in sorted(folder.glob("p*.jsonl")) if folder.exists() else []:
                for row in iter_jsonl(path):
                    if row["relation"] != relation:
                        continue
                    if entity_type and row["type"] != entity_type:
                        continue
                    s = row["statement"]
                    sid = str(s.get("id", ""))
                    item = (-stable_hash(s["entity"] + "|" + sid), s["entity"], sid, s)
                    if len(best) < limit:
                        heapq.heappush(best, item)
                    elif item[:3] > best[0][:3]:
                        heapq.heapreplace(best, item)
            self._peers[key] = [
                {"entity": e, "statement": s} for _, e, _, s in sorted(best, key=lambda t: t[1:3])
            ]
        return self._peers[key]
