"""Run the real megatron-core on a machine without a GPU by resolving its CUDA requests to the CPU.

megatron-core assumes CUDA everywhere: it asks `torch.cuda.current_device()`, creates tensors with
`device="cuda"`, calls `.cuda()`, builds CUDA streams and events, keeps CUDA RNG states and checks
`param.type()` against `torch.cuda.*Tensor` names. `install()` makes each of those resolve to the
CPU, so that megatron-core's own models, parallel_state, tensor-parallel layers, MoE router and
token dispatchers, pipeline schedules, DistributedDataParallel, the distributed optimizer and
dist_checkpointing run unchanged on CPU with the gloo backend.

Nothing here changes numerics: tensors are only placed on the CPU instead of a GPU; streams and
events become no-ops (the CPU executes in order); the CUDA RNG maps onto the CPU generator.
`install()` does nothing when a GPU is present, and is idempotent.
"""

from __future__ import annotations

import contextlib
import time

import torch
from torch.overrides import TorchFunctionMode

CPU = torch.device("cpu")
_installed = False


def is_active() -> bool:
    """True once the CPU runtime has been installed in this process."""
    return _installed


def install() -> bool:
    """Resolve megatron-core's CUDA requests to the CPU if no GPU is usable. Returns whether it did."""
    global _installed
    if _installed:
        return True
    if torch.cuda.is_available():
        return False
    _patch_torch_cuda()
    _patch_megatron()
    _CudaToCpuMode().__enter__()  # stays active for the life of the process
    _installed = True
    return True


# --- tensor placement -------------------------------------------------------------------------

_FACTORIES = {
    torch.empty,
    torch.zeros,
    torch.ones,
    torch.full,
    torch.tensor,
    torch.as_tensor,
    torch.arange,
    torch.range,
    torch.linspace,
    torch.logspace,
    torch.eye,
    torch.empty_strided,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.normal,
    torch.empty_like,
    torch.zeros_like,
    torch.ones_like,
    torch.full_like,
    torch.rand_like,
    torch.randn_like,
    torch.randint_like,
}


def _is_cuda(device) -> bool:
    if isinstance(device, bool):
        return False
    if isinstance(device, int):
        return True  # megatron passes integer GPU indices
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, torch.device) and device.type == "cuda"


_CUDA_TYPE_NAMES = {
    torch.float32: "torch.cuda.FloatTensor",
    torch.float16: "torch.cuda.HalfTensor",
    torch.bfloat16: "torch.cuda.BFloat16Tensor",
}


class _CudaToCpuMode(TorchFunctionMode):
    """Redirect CUDA placement to the CPU; every other call passes through untouched.

    Only factory calls, `.cuda()`, `.to(<cuda>)`, `.type()` (megatron's dtype checks compare it with
    `torch.cuda.*Tensor`) and `.pin_memory` are touched: rewriting other calls
    (e.g. collectives) would change their meaning.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FACTORIES:
            if _is_cuda(kwargs.get("device")):
                kwargs = {**kwargs, "device": CPU}
            if kwargs.get("pin_memory"):  # pinning needs a CUDA driver (e.g. rope_utils under CP)
                kwargs = {**kwargs, "pin_memory": False}
        elif func is torch.Tensor.cuda:
            return args[0]
        elif func is torch.Tensor.to:
            args, kwargs = _strip_cuda_from_to(args, kwargs)
        elif func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = _CUDA_TYPE_NAMES.get(args[0].dtype)
            if name is not None:
                return name
        elif func is torch.Tensor.pin_memory:
            return args[0]
        return func(*args, **kwargs)


def _strip_cuda_from_to(args, kwargs):
    if _is_cuda(kwargs.get("device")):
        kwargs = {**kwargs, "device": CPU}
    if len(args) > 1 and _is_cuda(args[1]):
        args = (args[0], CPU, *args[2:])
    return args, kwargs


# --- torch.cuda API ---------------------------------------------------------------------------


class _NullEvent:
    """A CUDA event on a device that executes in order: recording and waiting are no-ops."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess=False):
        self._time = None

    def record(self, stream=None):
        self._time = time.perf_counter()

    def wait(self, stream=None):
        pass

    def synchronize(self):
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, end: "_NullEvent") -> float:
        return (end._time - self._time) * 1000.0


class _NullStream:
    """A CUDA stream on a device that executes in order: all synchronisation is a no-op."""

    def __init__(self, device=None, priority: int = 0, **kwargs):
        self.device = CPU
        self.priority = priority

    def wait_stream(self, stream):
        pass

    def wait_event(self, event):
        pass

    def record_event(self, event=None):
        event = event or _NullEvent()
        event.record()
        return event

    def synchronize(self):
        pass

    def query(self) -> bool:
        return True

    @staticmethod
    def priority_range():
        return (0, 0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_DEFAULT_STREAM = _NullStream()


def _set_rng_state(new_state, device=None):
    torch.set_rng_state(new_state)


def _get_rng_state(device=None):
    return torch.get_rng_state()


def _patch_torch_cuda():
    cuda = torch.cuda
    cuda.current_device = lambda: CPU
    cuda.device_count = lambda: 1
    cuda.set_device = lambda device: None
    cuda.synchronize = lambda device=None: None
    cuda.empty_cache = lambda: None
    cuda.Stream = _NullStream
    cuda.Event = _NullEvent
    cuda.current_stream = lambda device=None: _DEFAULT_STREAM
    cuda.default_stream = lambda device=None: _DEFAULT_STREAM
    cuda.stream = lambda stream=None: contextlib.nullcontext(stream)
    cuda.set_stream = lambda stream: None
    cuda.is_current_stream_capturing = lambda: False
    # Argument parsing rejects the stand-in stream before any TorchFunctionMode sees the call.
    torch.Tensor.record_stream = lambda self, stream: None
    cuda.get_rng_state = cuda.random.get_rng_state = _get_rng_state
    cuda.set_rng_state = cuda.random.set_rng_state = _set_rng_state
    # One generator serves both "devices": seeding CUDA seeds the CPU generator.
    # (torch.manual_seed itself calls cuda.manual_seed_all: seed the CPU generator directly.)
    cuda.manual_seed = cuda.random.manual_seed = torch.default_generator.manual_seed
    cuda.manual_seed_all = cuda.random.manual_seed_all = torch.default_generator.manual_seed
    cuda.memory_allocated = lambda device=None: 0
    cuda.max_memory_allocated = lambda device=None: 0
    cuda.memory_reserved = lambda device=None: 0
    cuda.reset_peak_memory_stats = lambda device=None: None


def _patch_megatron():
    """Patch the few megatron-core functions that bypass the torch entry points patched above."""
    from megatron.core.fusions import fused_softmax
    from megatron.core.tensor_parallel import random as mcore_random
    from megatron.core.transformer import utils as transformer_utils
    from megatron.core.transformer.moe import token_dispatcher

    mcore_random._get_cuda_rng_state = lambda device=None, clone=False, graph_safe=False: (
        torch.get_rng_state()
    )
    mcore_random._set_cuda_rng_state = lambda new_state, device=-1, graph_safe=False: (
        torch.set_rng_state(new_state)
    )

    # Built on "cuda" also inside autograd's backward (activation recompute), where no
    # TorchFunctionMode is active.
    def causal_mask(sq: int) -> torch.Tensor:
        return torch.triu(torch.ones(sq, sq, device=CPU), diagonal=1).bool()

    transformer_utils.get_default_causal_mask = causal_mask
    fused_softmax.get_default_causal_mask = causal_mask

    # The alltoall dispatcher turns its split sizes into numpy "moved to CPU"; tensors that were
    # on the CPU all along are skipped, and gloo's all_to_all_single then gets tensors where it
    # wants lists.
    def move_to_cpu(tensor, as_numpy: bool = False, record_stream: bool = False):
        if as_numpy and torch.is_tensor(tensor):
            return tensor.numpy()
        return tensor

    token_dispatcher.maybe_move_tensor_to_cpu = move_to_cpu
