"""What reading a compressed corpus costs synthesis, against the same corpus plain.

    python benchmarks/bench_compressed_input.py --mb 100 --files 8 --extract-mb 20 --work /tmp/bench_packed

Web corpora ship compressed (`.jsonl.gz`, `.jsonl.zst`, ...) or as parquet. A synthesis map
task reads a compressed file whole (engine/io.py: it cannot be entered in the middle),
decompressing as it goes, and a parquet file by row groups (engine/parquet.py); the search
index keeps such a corpus's pages in zstd blocks (environment/build.py). The corpus is bench_synthesis.py's (the bundled corpus renamed, `--mb` MB) cut into
`--files` files in order, written plain and by each codec's command-line default level; its
copies repeat one another, so they compress far better than text does: `--corpus FILE` takes
a real corpus instead (e.g. `scripts/make_machine_corpus.py --source package-readmes`). Per
codec this prints the size on disk, the seconds of one process reading every line of every
file through the tasks' byte ranges (engine/io.read_lines), and, on the first `--extract-mb` MB
(its own files), the extract stage's CPU seconds and peak RSS of its largest process
(`--tasks` = the file count, two at a time) and the search index build's seconds and MB on disk.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import lzma
import shutil
import sys
import time
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_synthesis import make_corpus  # noqa: E402
from benchmarks.measure import run_measured  # noqa: E402
from data_synthesis.engine.io import describe, read_lines, task_ranges  # noqa: E402


def to_parquet(data: bytes) -> bytes:
    """JSONL as parquet (pyarrow's defaults: snappy pages), row groups of 1,000 documents."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = [json.loads(line) for line in data.splitlines()]
    keys = ("id", "title", "url", "date", "text")
    sink = pa.BufferOutputStream()
    table = pa.table({key: [doc.get(key) for doc in docs] for key in keys})
    pq.write_table(table, sink, row_group_size=1000)
    return sink.getvalue().to_pybytes()


CODECS = {  # suffix, compress (each tool's default level)
    "plain": (".jsonl", None),
    "gzip": (".jsonl.gz", lambda data: gzip.compress(data, 6)),
    "zstd": (".jsonl.zst", lambda data: zstandard.ZstdCompressor(level=3).compress(data)),
    "bzip2": (".jsonl.bz2", lambda data: bz2.compress(data, 9)),
    "xz": (".jsonl.xz", lambda data: lzma.compress(data, preset=6)),
    "parquet": (".parquet", to_parquet),
}


def split(corpus: Path, folder: Path, files: int, megabytes: int | None = None) -> list[bytes]:
    """The corpus's lines (its first `megabytes` MB when given) in `files` parts, in order."""
    lines, size = [], 0
    with corpus.open("rb") as handle:
        for line in handle:
            if megabytes and size >= megabytes * 10**6:
                break
            lines.append(line)
            size += len(line)
    per = -(-len(lines) // files)
    return [b"".join(lines[i * per : (i + 1) * per]) for i in range(files)]


def write(parts: list[bytes], folder: Path, codec: str) -> list[Path]:
    suffix, compress = CODECS[codec]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, data in enumerate(parts):
        path = folder / f"part_{number:03d}{suffix}"
        if not path.exists():
            path.write_bytes(compress(data) if compress else data)
        paths.append(path)
    return paths


def read_all(paths: list[Path], tasks: int) -> tuple[float, float, int]:
    """(seconds, CPU seconds, text bytes) of reading every line through the tasks' ranges."""
    started, cpu, text = time.perf_counter(), time.process_time(), 0
    described = describe(paths)
    for rank in range(tasks):
        for byte_range in task_ranges(described, rank, tasks):
            text += sum(len(line) for _, line in read_lines(byte_range))
    return time.perf_counter() - started, time.process_time() - cpu, text


def extract(paths: list[Path], out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "data_synthesis", "extract", "--input", *map(str, paths)]
    command += ["--output", str(out), "--tasks", str(len(paths)), "--workers", "2"]
    measured = run_measured(command)
    return {
        "extract_cpu_s": round(measured.cpu_seconds, 1),
        "extract_wall_s": round(measured.seconds, 1),
        "extract_peak_mb": round(measured.peak_rss_mb, 1),
    }


def index(paths: list[Path], cache: Path) -> dict:
    shutil.rmtree(cache, ignore_errors=True)
    command = [sys.executable, "-m", "data_synthesis.environment", "index", *map(str, paths)]
    command += ["--cache-dir", str(cache), "--workers", "2", "--shard-mb", "4"]
    measured = run_measured(command)
    disk = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    return {"index_wall_s": round(measured.seconds, 1), "index_mb": round(disk / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--extract-mb", type=int, default=20)
    parser.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_compressed_input"))
    parser.add_argument(
        "--corpus", type=Path, help="this JSONL as it is (default: --mb MB of renamed copies)"
    )
    args = parser.parse_args()
    corpus = args.corpus or args.work / "corpus.jsonl"
    if not args.corpus:
        make_corpus(corpus, args.mb)
    parts = split(corpus, args.work, args.files)
    small = split(corpus, args.work, args.files, args.extract_mb)
    rows = []
    for codec in args.codecs:
        paths = write(parts, args.work / codec, codec)
        seconds, cpu, text = read_all(paths, args.files)
        row = {
            "codec": codec,
            "mb_on_disk": round(sum(p.stat().st_size for p in paths) / 1e6, 2),
            "text_mb": round(text / 1e6, 2),
            "ratio": round(text / sum(p.stat().st_size for p in paths), 2),
            "read_s": round(seconds, 2),
            "read_mb_per_s": round(text / 1e6 / seconds, 1),
        }
        small_paths = write(small, args.work / f"{codec}_small", codec)
        row |= extract(small_paths, args.work / f"{codec}_out")
        row |= index(small_paths, args.work / f"{codec}_index")
        rows.append(row)
        print(json.dumps(row), flush=True)
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in header) + " |")
    (args.work / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
