"""The CPU runtime places megatron-core's CUDA requests on the CPU without changing any result."""

import pytest
import torch

from megatron_agentic.testing.distributed import run_distributed

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")


def _placement_checks():
    from megatron_agentic import cpu_runtime

    assert cpu_runtime.install()
    made = [
        torch.zeros(2, device="cuda"),
        torch.empty(3, device=torch.cuda.current_device()),
        torch.ones(2, device=0),
        torch.arange(4, device=torch.device("cuda", 0)),
        torch.ones(2).cuda(),
        torch.ones(2).to("cuda"),
        torch.ones(2).to(device="cuda:0"),
    ]
    assert all(t.device.type == "cpu" for t in made)
    assert torch.ones(1).type() == "torch.cuda.FloatTensor"
    assert torch.ones(1, dtype=torch.bfloat16).type() == "torch.cuda.BFloat16Tensor"
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        event = stream.record_event()
    event.synchronize()
    torch.ones(1).record_stream(torch.cuda.current_stream())

    # The CUDA RNG is the CPU generator: same seed, same draws.
    torch.cuda.manual_seed(7)
    first = torch.randn(4)
    state = torch.cuda.get_rng_state()
    second = torch.randn(4)
    torch.cuda.set_rng_state(state)
    assert torch.equal(torch.randn(4), second)
    torch.manual_seed(7)
    assert torch.equal(torch.randn(4), first)

    # Collectives pass through untouched.
    torch.distributed.init_process_group("gloo")
    value = torch.tensor([float(torch.distributed.get_rank() + 1)])
    torch.distributed.all_reduce(value)
    gathered = [torch.zeros(2) for _ in range(2)]
    torch.distributed.all_gather(gathered, torch.full((2,), float(torch.distributed.get_rank())))
    return float(value), [g.tolist() for g in gathered]


def test_cuda_requests_resolve_to_cpu():
    results = run_distributed(_placement_checks, 2)
    assert results == [(3.0, [[0.0, 0.0], [1.0, 1.0]])] * 2


def _model_output_with_and_without_runtime():
    """Same weights, same tokens: a megatron-core layer's output is bit-identical to plain torch."""
    torch.manual_seed(0)
    x = torch.randn(8, 2, 64)
    weight = torch.randn(64, 64)
    plain = x @ weight.t()
    from megatron_agentic import cpu_runtime

    cpu_runtime.install()
    placed = x.to("cuda") @ weight.cuda().t()
    return torch.equal(plain, placed)


def test_runtime_does_not_change_numerics():
    assert run_distributed(_model_output_with_and_without_runtime, 1) == [True]
