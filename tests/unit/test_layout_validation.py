"""Impossible parallel layouts fail before any process group exists, naming the numbers."""

import pytest

from megatron_agentic.model import get_preset
from megatron_agentic.parallel import LayoutError, ParallelConfig, validate_layout


@pytest.mark.parametrize(
    "layout, world_size, message",
    [
        (dict(ep=3), 3, "num_experts=4 is not divisible by ep=3"),
        (dict(tp=3), 3, "num_attention_heads=4 is not divisible by tp=3"),
        (dict(tp=4), 4, "num_query_groups=2 is not divisible by tp=4"),
        (dict(pp=3), 3, "num_layers=2 is not divisible by pp*vpp=3*1=3"),
        (dict(pp=2, vpp=2), 4, "num_layers=2 is not divisible by pp*vpp=2*2=4"),
        (dict(tp=2), 3, "world size 3 is not divisible by tp*cp*pp=2*1*1=2"),
        (dict(ep=4), 2, "world size 2 is not divisible by etp*ep*pp=1*4*1=4"),
        (dict(vpp=2), 1, "vpp=2 needs pp > 1"),
        (dict(moe_token_dispatcher="nccl"), 1, "moe_token_dispatcher='nccl'"),
        (dict(tp=0), 1, "tp=0 must be >= 1"),
    ],
)
def test_impossible_layout_is_named(layout, world_size, message):
    with pytest.raises(LayoutError, match=None) as error:
        validate_layout(get_preset("tiny"), ParallelConfig(**layout), world_size)
    assert message in str(error.value)


def test_sequence_length_checks():
    model = get_preset("tiny")
    with pytest.raises(LayoutError, match="seq_length=33 is not divisible by tp=2"):
        validate_layout(model, ParallelConfig(tp=2), 2, seq_length=33)
    with pytest.raises(LayoutError, match="exceeds max_position_embeddings=1024"):
        validate_layout(model, ParallelConfig(), 1, seq_length=2048)


def test_context_parallel_layout_checks():
    # CP runs on CPU too (megatron_agentic.cp_attention); the sequence must split into 2*CP*TP.
    assert validate_layout(get_preset("tiny"), ParallelConfig(cp=2), 2, seq_length=64) == 1
    with pytest.raises(LayoutError, match="seq_length=60 is not divisible by 2\\*cp\\*tp"):
        validate_layout(get_preset("tiny"), ParallelConfig(cp=2, tp=2), 4, seq_length=60)


def test_valid_layout_returns_data_parallel_size():
    model = get_preset("qwen3_30b_a3b")
    assert validate_layout(model, ParallelConfig(tp=2, pp=4, ep=8), 64, seq_length=32768) == 8


def test_each_gpu_rank_names_its_own_device_to_nccl(monkeypatch):
    """Without `device_id`, NCCL guessed the device from the global rank (warned on the H200)."""
    import inspect

    import torch

    from megatron_agentic.parallel import process_group_kwargs

    monkeypatch.setenv("LOCAL_RANK", "3")
    config = ParallelConfig(distributed_timeout_minutes=2)
    gpu = process_group_kwargs(config, on_gpu=True)
    assert gpu["backend"] == "nccl" and gpu["device_id"] == torch.device("cuda", 3)
    assert gpu["timeout"].total_seconds() == 120
    cpu = process_group_kwargs(config, on_gpu=False)
    assert cpu["backend"] == "gloo" and "device_id" not in cpu
    accepted = inspect.signature(torch.distributed.init_process_group).parameters
    assert set(gpu) <= set(accepted)
