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


def _two_depths():
    import dataclasses

    import torch

    from megatron_agentic import parallel
    from megatron_agentic.model import build_model, get_preset, transformer_config

    losses = []
    for layers in (1, 3):  # the MoE metrics of the first model must not outlive it
        parallel.initialize(parallel.ParallelConfig())
        model_cfg = dataclasses.replace(get_preset("tiny"), num_layers=layers)
        (model,) = build_model(
            model_cfg, transformer_config(model_cfg, parallel.ParallelConfig()), 16
        )
        tokens = torch.randint(0, model_cfg.vocab_size, (1, 16))
        loss = model(tokens, torch.arange(16).unsqueeze(0), None, labels=tokens).float().mean()
        loss.backward()
        losses.append(loss.item())
        parallel.destroy()
    return losses


def test_a_deeper_model_after_a_shallower_one_in_the_same_process():
    # benchmarks and the GPU script build several models per process (it failed on a GPU:
    # megatron-core's MoE metrics tracker kept the first model's layer count)
    (losses,) = run_distributed(_two_depths, 1)
    assert len(losses) == 2
