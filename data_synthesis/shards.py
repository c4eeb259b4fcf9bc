"""Deterministic sharding and crash-safe, resumable stage execution over JSONL.

A stage maps each input item to zero or more output records. Shard `i` of `n` owns the items whose
position is i modulo n. While a shard runs, every finished item is appended (and flushed) to
`<name>.partial` as one line `{"item": index, "records": [...]}`; a rerun keeps the complete lines,
drops a torn last line, and continues with the next item. When every item is done the shard is
written to its final name through a temporary file and a rename, so a finished shard is never
half-written, and a rerun skips it. Each item draws from its own RNG seeded by (seed, stage, item
id), so an interrupted run completed later gives byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm import tqdm


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a JSONL file; a malformed line is an error naming file:line."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error})") from None
    return records


def write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    """Write records atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def item_rng(seed: int, stage: str, item_id: str) -> random.Random:
    """An RNG that depends only on the seed, the stage and the item."""
    digest = hashlib.sha256(f"{seed}:{stage}:{item_id}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def shard_path(directory: Path, stage: str, shard: int, num_shards: int) -> Path:
    return directory / f"{stage}-{shard:05d}-of-{num_shards:05d}.jsonl"


def run_shard(
    stage: str,
    items: list[dict],
    process: Callable[[list[dict], list[random.Random]], list[list[dict]]],
    directory: Path,
    shard: int,
    num_shards: int,
    seed: int,
    batch_size: int = 1,
    id_key: str = "id",
) -> Path:
    """Run one shard of a stage (resuming if interrupted); returns the finished shard file.

    `process` maps a batch of items (with their RNGs) to each item's output records; an LLM
    backend generates for the whole batch at once."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"--shard {shard} is outside 0..{num_shards - 1}")
    final = shard_path(directory, stage, shard, num_shards)
    if final.exists():
        return final
    directory.mkdir(parents=True, exist_ok=True)
    mine = [(i, item) for i, item in enumerate(items) if i % num_shards == shard]
    partial = final.with_name(final.name + ".partial")
    done = _completed_items(partial)
    todo = [(i, item) for i, item in mine if i not in done]
    progress = tqdm(
        desc=f"{stage} shard {shard}/{num_shards}",
        unit="item",
        total=len(mine),
        initial=len(mine) - len(todo),
        leave=False,
    )
    with open(partial, "a", encoding="utf-8") as handle:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            outputs = process(
                [item for _, item in batch],
                [item_rng(seed, stage, str(item[id_key])) for _, item in batch],
            )
            for (index, _), records in zip(batch, outputs):
                handle.write(
                    json.dumps(
                        {"item": index, "records": records}, ensure_ascii=False, sort_keys=True
                    )
                    + "\n"
                )
                done[index] = records
            handle.flush()
            progress.update(len(batch))
    progress.close()
    write_jsonl(final, (r for index, _ in mine for r in done[index]))
    partial.unlink()
    return final


def _completed_items(partial: Path) -> dict[int, list[dict]]:
    """Items already finished in a partial shard; a torn last line (killed mid-write) is cut."""
    if not partial.exists():
        return {}
    done, good_bytes = {}, 0
    with open(partial, "rb") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break
            if not line.endswith(b"\n"):
                break
            done[entry["item"]] = entry["records"]
            good_bytes += len(line)
    with open(partial, "r+b") as handle:
        handle.truncate(good_bytes)
    return done


def read_stage(directory: Path, stage: str, num_shards: int) -> list[dict]:
    """All records of a finished stage, in item order across shards."""
    paths = [shard_path(directory, stage, s, num_shards) for s in range(num_shards)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"stage {stage} is not finished: missing {missing}")
    return [record for path in paths for record in read_jsonl(path)]
