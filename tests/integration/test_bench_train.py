"""The training-throughput benchmark harness runs (tiny preset on CPU) and reports its figures."""

from megatron_agentic.testing.distributed import run_distributed


def _bench():
    from benchmarks.bench_train import main

    return main(["--tiny", "--seq-lengths", "64", "128", "--warmup", "1", "--steps", "2"])


def test_bench_train_reports_throughput_and_mfu():
    (rows,) = run_distributed(_bench, 1)
    assert [r["seq"] for r in rows] == [64, 128]
    for row in rows:
        assert row["tokens/s"] > 0 and row["TFLOP/s/GPU"] > 0 and 0 < row["MFU"] < 1
