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


def _depths(depths):
    """(loss, layers the MoE metrics hold) of a forward+backward of a tiny model of each depth,
    built one after another in this process."""
    import dataclasses

    import torch
    from megatron.core.transformer.moe.moe_logging import get_moe_metrics_tracker

    from megatron_agentic import parallel
    from megatron_agentic.model import build_model, get_preset, transformer_config

    out = []
    for layers in depths:
        parallel.initialize(parallel.ParallelConfig())
        model_cfg = dataclasses.replace(get_preset("tiny"), num_layers=layers)
        (model,) = build_model(
            model_cfg, transformer_config(model_cfg, parallel.ParallelConfig()), 16
        )
        tokens = torch.randint(0, model_cfg.vocab_size, (1, 16))
        loss = model(tokens, torch.arange(16).unsqueeze(0), None, labels=tokens).float().mean()
        loss.backward()
        tracked = [len(entry.values) for entry in get_moe_metrics_tracker().metrics.values()]
        out.append((loss.item(), tracked))
        parallel.destroy()
    return out


def test_a_deeper_model_after_a_shallower_one_in_the_same_process():
    # benchmarks and the GPU script build several models per process (it failed on a GPU:
    # megatron-core's MoE metrics tracker kept the first model's layer count)
    (both,) = run_distributed(_depths, 1, (1, 3))
    (alone,) = run_distributed(_depths, 1, (3,))
    assert both[0][1] and set(both[0][1]) == {1} and set(both[1][1]) == {3}
    assert both[1] == alone[0]  # the same loss as the deeper model built in a fresh process
