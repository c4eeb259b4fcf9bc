"""A checkpoint root on disk: its layout, the integrity of its files, retention.

    ROOT/latest_checkpointed_iteration.txt    the iteration number, or "release"
    ROOT/iter_0000100/                        one checkpoint (see megatron_agentic.checkpointing)
    ROOT/iter_0000100/checksums.json          size and sha256 of every other file in it
    ROOT/.iter_0000100.partial/               a save in progress (never loaded)
    ROOT/.iter_0000100.deleting/              a checkpoint being deleted by retention

Nothing here knows what the files hold (that is `checkpointing`, on megatron-core); these are the
file-level rules: the marker is replaced atomically; checksums are recorded when a save is
published and verified before a load (hashing split over the ranks); the newest intact iteration
can be found when the latest is damaged; retention deletes only what the newest published
checkpoint makes redundant.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch

LATEST = "latest_checkpointed_iteration.txt"
RELEASE = "release"
CHECKSUMS = "checksums.json"


class CheckpointCorrupt(RuntimeError):
    """A checkpoint file differs from what was saved (changed, truncated, empty or missing)."""


def iteration_dir(root: str | Path, iteration: int | str) -> Path:
    """`root/iter_0000042`, or `root/release`."""
    name = RELEASE if iteration == RELEASE else f"iter_{int(iteration):07d}"
    return Path(root) / name


def read_latest(root: str | Path) -> int | str | None:
    """The iteration the latest marker names (an int or "release"), or None if there is none."""
    marker = Path(root) / LATEST
    if not marker.is_file():
        return None
    text = marker.read_text().strip()
    if text == RELEASE:
        return RELEASE
    if not text.isdigit():
        raise ValueError(f"{marker}: expected an iteration number or 'release', got {text!r}")
    return int(text)


def write_latest(root: str | Path, iteration: int | str) -> None:
    """Point the marker at a finished checkpoint (temp file + rename: never half-written)."""
    marker = Path(root) / LATEST
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(f"{iteration}\n")
    os.replace(tmp, marker)


def all_gather(item) -> list:
    """`item` from every rank, in rank order ([item] without torch.distributed)."""
    if not torch.distributed.is_initialized():
        return [item]
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, item)
    return gathered


# --- checksums ----------------------------------------------------------------------------------


def file_checksums(directory: Path) -> dict:
    """{relative path: {"size", "sha256"}} of every file in `directory` (a collective when
    torch.distributed is initialized: file i is hashed by rank i % world)."""
    names = _listed_files(directory)
    return dict(zip(names, share_out(_hash_file, [directory / name for name in names])))


def write_checksums(directory: Path, checksums: dict) -> None:
    """Record what `file_checksums` found, for `checkpoint_problems` to verify."""
    (directory / CHECKSUMS).write_text(json.dumps({"sha256": checksums}, indent=1, sort_keys=True))


def _listed_files(directory: Path) -> list[str]:
    """Every file of a checkpoint directory but the checksum list, relative, sorted."""
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and path.name != CHECKSUMS
    )


def _hash_file(path: Path) -> dict:
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": digest}


def share_out(fn, items: list) -> list:
    """[fn(item) for item in items] computed in parallel: item i on rank i % world; every rank
    gets every result."""
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    results = [None] * len(items)
    for part in all_gather({i: fn(items[i]) for i in range(rank, len(items), world)}):
        for i, result in part.items():
            results[i] = result
    return results


def _check_file(item: tuple[Path, dict]) -> str | None:
    """What is wrong with one file against its recorded size and sha256, or None."""
    path, expected = item
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != expected["size"]:
        kind = "empty" if size == 0 else "truncated" if size < expected["size"] else "longer"
        return f"{kind}: {size} bytes, {expected['size']} were saved"
    if _hash_file(path)["sha256"] != expected["sha256"]:
        return "contents changed since the save (sha256 differs)"
    return None


def checkpoint_problems(directory: str | Path) -> list[str] | None:
    """Each damaged file of a checkpoint as "<path>: <what>", [] if intact, None if it records no
    checksums (saved before they existed, or an imported model). Collective when torch.distributed
    is initialized: the files are checked in parallel, every rank gets the same answer."""
    directory = Path(directory)
    listing = directory / CHECKSUMS
    if not listing.is_file():
        return None
    try:
        recorded = json.loads(listing.read_text())["sha256"]
    except (ValueError, KeyError) as error:
        return [f"{listing}: unreadable checksum list ({error})"]
    items = [(directory / name, entry) for name, entry in sorted(recorded.items())]
    checked = share_out(_check_file, items)
    return [f"{path}: {what}" for (path, _), what in zip(items, checked) if what]


def verify_checkpoint(directory: str | Path) -> None:
    """Raise `CheckpointCorrupt` naming every damaged file of the checkpoint in `directory`."""
    problems = checkpoint_problems(directory)
    if problems:
        raise CheckpointCorrupt(
            f"{directory}: {len(problems)} file(s) differ from what was saved: "
            + "; ".join(problems)
        )


def published_iterations(root: str | Path) -> list[int]:
    """The iterations of the finished checkpoints under `root`, oldest first."""
    found = []
    for path in Path(root).glob("iter_*"):
        match = re.fullmatch(r"iter_(\d+)", path.name)
        if match and path.is_dir():
            found.append(int(match.group(1)))
    return sorted(found)


def newest_intact_iteration(root: str | Path, below: int | None = None) -> int | None:
    """The newest iteration under `root` (below `below`, if given) whose files all verify."""
    for iteration in reversed(published_iterations(root)):
        if below is not None and iteration >= below:
            continue
        if not checkpoint_problems(iteration_dir(root, iteration)):
            return iteration
    return None


# --- retention ----------------------------------------------------------------------------------


def apply_retention(
    root: str | Path, newest: int, keep_last_n: int | None, keep_every_m: int | None
) -> list[int]:
    """Delete the checkpoints under `root` that are neither among the `keep_last_n` newest up to
    `newest` (the one just published) nor at an iteration divisible by `keep_every_m`; returns
    the deleted iterations. Checkpoints above `newest` (left by a run that resumed from an older
    one) are not counted or touched: the run overwrites them when it gets there. Each is renamed
    to a hidden `.iter_*.deleting` first, so an interrupted deletion never leaves a half-deleted
    directory that looks like a checkpoint."""
    root = Path(root)
    for leftover in root.glob(".iter_*.deleting"):
        shutil.rmtree(leftover, ignore_errors=True)
    if keep_last_n is None:
        return []
    candidates = [i for i in published_iterations(root) if i <= newest]
    keep = set(candidates[-keep_last_n:]) | {newest}
    if keep_every_m:
        keep |= {i for i in candidates if i % keep_every_m == 0}
    deleted = []
    for iteration in candidates:
        if iteration in keep:
            continue
        directory = iteration_dir(root, iteration)
        doomed = root / f".{directory.name}.deleting"
        os.replace(directory, doomed)
        shutil.rmtree(doomed)
        deleted.append(iteration)
    return deleted
