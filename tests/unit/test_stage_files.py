"""The partition stages' output files (data_synthesis/engine/io.py): `.jsonl.zst` written
atomically and read back as records and lines, a cut one an error naming it; the memory's
framed files (FramedLines: a line read back by its place, one frame decompressed); finalize's
join of the compressed shards into one plain file per kind (engine/summary.py) stopping at its
limit on the text, not on the compressed bytes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from data_synthesis.config import PipelineConfig
from data_synthesis.engine.io import (
    FRAME_TEXT,
    IN_FRAME_BITS,
    FramedLines,
    TooLarge,
    count_lines,
    iter_jsonl,
    join_files,
    write_jsonl,
)
from data_synthesis.engine.lookup import Tables
from data_synthesis.engine.summary import _heldout_file, _single_files
from megatron_agentic.data.compression import DamagedFileError, codec_of

RECORDS = [{"id": f"d{i}", "text": "the same tool response, again " * 20} for i in range(500)]


def _plain(records) -> bytes:
    return b"".join(
        (json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode() for r in records
    )


def test_a_zst_output_is_zstd_and_reads_back_as_its_records(tmp_path):
    path = write_jsonl(tmp_path / "p00000.jsonl.zst", RECORDS)
    assert codec_of(path) == "zstd" and path.stat().st_size * 20 < len(_plain(RECORDS))
    assert list(iter_jsonl(path)) == RECORDS and count_lines(path) == len(RECORDS)
    plain = write_jsonl(tmp_path / "p00000.jsonl", RECORDS)
    assert codec_of(plain) is None and plain.read_bytes() == _plain(RECORDS)


def test_a_write_that_fails_leaves_the_old_file_whole(tmp_path):
    path = write_jsonl(tmp_path / "p00000.jsonl.zst", RECORDS[:3])

    def failing():
        yield from RECORDS
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_jsonl(path, failing())
    assert list(iter_jsonl(path)) == RECORDS[:3]


def test_a_cut_zst_output_is_an_error_naming_it(tmp_path):
    path = write_jsonl(tmp_path / "p00000.jsonl.zst", RECORDS)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DamagedFileError, match="p00000.jsonl.zst"):
        list(iter_jsonl(path))
    with pytest.raises(DamagedFileError, match="p00000.jsonl.zst"):
        count_lines(path)


def test_join_decompresses_and_stops_at_its_limit_leaving_the_target(tmp_path):
    parts = [
        write_jsonl(tmp_path / "a.jsonl.zst", RECORDS[:200]),
        write_jsonl(tmp_path / "b.jsonl", RECORDS[200:300]),
        write_jsonl(tmp_path / "c.jsonl.zst", RECORDS[300:]),
    ]
    target = tmp_path / "joined.jsonl"
    assert join_files(parts, target) == len(RECORDS)
    assert target.read_bytes() == _plain(RECORDS)
    with pytest.raises(TooLarge, match="joined.jsonl"):
        join_files(parts, target, limit=len(_plain(RECORDS)) - 1)
    assert target.read_bytes() == _plain(RECORDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.jsonl.zst",
        "b.jsonl",
        "c.jsonl.zst",
        "joined.jsonl",
    ]


def test_shards_whose_text_passes_the_limit_stay_the_output(tmp_path):
    """1.8 MB of text in a few KB of zstd: under `final_single_file_mb` 1 compressed, over it as
    text, so finalize keeps the shards and leaves no single file (not even the first kind's)."""
    big = [{"id": f"h{i}", "text": "x" * 1000} for i in range(1800)]
    write_jsonl(tmp_path / "final/fas/00000.jsonl.zst", RECORDS[:10])
    write_jsonl(tmp_path / "final/has/00000.jsonl.zst", big)
    config = PipelineConfig()
    plan = SimpleNamespace(root=tmp_path, config=config)
    config.engine.final_single_file_mb = 1
    assert _single_files(plan) == {"fas": "final/fas/*.jsonl.zst", "has": "final/has/*.jsonl.zst"}
    assert not list((tmp_path / "final").glob("*.jsonl*"))
    config.engine.final_single_file_mb = 2
    assert _single_files(plan) == {"fas": "final/fas.jsonl", "has": "final/has.jsonl"}
    assert list(iter_jsonl(tmp_path / "final/has.jsonl")) == big


def test_held_out_questions_are_joined_only_under_the_limit(tmp_path):
    """eval/heldout_questions.jsonl is the partitions' files joined while they hold at most
    `final_single_file_mb`; past it the partition files are the output and no joined file is
    left (a terabyte's ~0.5 TB is not copied by the one finalize task)."""
    parts = [
        write_jsonl(tmp_path / f"eval/heldout_questions/p{p:05d}.jsonl", [{"q": "x" * 1000}] * 900)
        for p in range(2)
    ]
    config = PipelineConfig()
    plan = SimpleNamespace(root=tmp_path, config=config)
    config.engine.final_single_file_mb = 2
    assert _heldout_file(plan) == "eval/heldout_questions.jsonl"
    joined = tmp_path / "eval/heldout_questions.jsonl"
    assert joined.read_bytes() == b"".join(p.read_bytes() for p in parts)
    config.engine.final_single_file_mb = 1
    assert _heldout_file(plan) == "eval/heldout_questions/" and not joined.exists()


def test_a_framed_file_gives_each_line_back_by_its_place(tmp_path):
    """The memory's entity records and look-up rows (engine/memory_store.py): every line comes
    back by the place FramedLines gave it, through the look-up tables' reader, a line streamed
    in parts (a common value's entity list, 1 MB here) among them; frames end at the first line
    end past FRAME_TEXT, so their text stays near it and is decompressed alone; the file is an
    ordinary zstd file of many frames (iter_jsonl streams it); a place that is no frame is
    an error naming the file."""
    path, places = tmp_path / "p00000.jsonl.zst", []
    with open(path, "wb") as handle:
        lines = FramedLines(handle)
        for i, record in enumerate(RECORDS):
            places.append(lines.place())
            if i == 250:
                lines.write(b'{"id": "common", "entities": [')
                for _ in range(100_000):
                    lines.write(b'"x", ')
                lines.write(b'"y"]}\n')
            else:
                lines.write(_plain([record]))
        lines.close()
    expected = [*RECORDS[:250], {"id": "common", "entities": ["x"] * 100_000 + ["y"]}]
    expected += RECORDS[251:]
    tables = Tables()
    assert [tables.line(path, place) for place in reversed(places)] == expected[::-1]
    assert list(iter_jsonl(path)) == expected
    starts = sorted({place >> IN_FRAME_BITS for place in places})
    assert len(starts) >= len(_plain(RECORDS)) // FRAME_TEXT
    assert all(place % (1 << IN_FRAME_BITS) < FRAME_TEXT for place in places)
    assert path.stat().st_size < len(_plain(RECORDS)) / 10
    with pytest.raises(DamagedFileError, match="p00000.jsonl.zst: no zstd frame at byte 1"):
        Tables().line(path, 1 << IN_FRAME_BITS)
