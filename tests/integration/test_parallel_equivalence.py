"""Each parallel layout trains exactly like one rank: same loss, grad norm, and loss after a step.

A one-rank reference builds the tiny Qwen3-MoE, saves its weights with megatron-core
dist_checkpointing, and takes two optimizer steps on a fixed global batch. Each layout runs on two
real gloo ranks, loads those weights (resharded to its layout) and takes the same two steps. The
step-1 loss checks the forward pass, the step-1 grad norm the gradients (all shards, all reduced),
and the step-2 loss the weights after the update. float32 throughout; the tolerance covers only
the changed summation order of reductions.
"""

from __future__ import annotations

import os

import pytest
import torch

from megatron_agentic.testing.distributed import run_distributed

SEQ = 32
GLOBAL_BATCH = 4
RTOL = 2e-5


def _model_cfg():
    from megatron_agentic.model import get_preset

    # 4 layers so that PP=2 with 2 virtual stages has a layer per chunk; aux loss large enough
    # that a wrong router gradient shows in the grad norm.
    return get_preset("tiny", num_layers=4, moe_aux_loss_coeff=1e-2)


def _global_batch() -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, _model_cfg().vocab_size, (GLOBAL_BATCH, SEQ + 1), generator=generator)
    return [
        {
            "tokens": tokens[i : i + 1, :-1],
            "labels": tokens[i : i + 1, 1:],
            "loss_mask": torch.ones(1, SEQ),
            "position_ids": torch.arange(SEQ).unsqueeze(0),
        }
        for i in range(GLOBAL_BATCH)
    ]


def _train_two_steps(layout: dict, checkpoint_dir: str, save: bool) -> list[float]:
    from megatron.core import dist_checkpointing, parallel_state
    from megatron.core.optimizer import OptimizerConfig

    from megatron_agentic import parallel
    from megatron_agentic.model import transformer_config
    from megatron_agentic.train_step import setup_model_and_optimizer, train_step

    par = parallel.ParallelConfig(**layout)
    model_cfg = _model_cfg()
    parallel.validate_layout(model_cfg, par, int(os.environ["WORLD_SIZE"]), SEQ)
    parallel.initialize(par)
    config = transformer_config(model_cfg, par)
    optimizer_cfg = OptimizerConfig(
        optimizer="adam",
        lr=1e-2,
        weight_decay=0.1,
        clip_grad=1.0,
        use_distributed_optimizer=par.use_distributed_optimizer,
    )
    model, optimizer = setup_model_and_optimizer(
        model_cfg, config, optimizer_cfg, SEQ, par.use_distributed_optimizer
    )
    # Keys inside the file are global (layer offsets included); the dict nesting is ours.
    sharded = {f"chunk{i}": chunk.module.sharded_state_dict() for i, chunk in enumerate(model)}
    if save:
        os.makedirs(checkpoint_dir, exist_ok=True)
        dist_checkpointing.save(sharded, checkpoint_dir)
    else:
        loaded = dist_checkpointing.load(sharded, checkpoint_dir)
        for i, chunk in enumerate(model):
            chunk.module.load_state_dict(loaded[f"chunk{i}"])

    dp_rank = parallel_state.get_data_parallel_rank()
    dp_size = parallel_state.get_data_parallel_world_size()
    micro_batches = _global_batch()[dp_rank::dp_size]
    figures = []
    for _ in range(2):
        iterators = [iter(micro_batches) for _ in model]
        result = train_step(
            model,
            optimizer,
            config,
            iterators if len(model) > 1 else iterators[0],
            num_microbatches=len(micro_batches),
            micro_batch_size=1,
            seq_length=SEQ,
        )
        figures += [result.lm_loss, result.grad_norm]
    parallel.destroy()
    return figures


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    checkpoint_dir = str(tmp_path_factory.mktemp("reference") / "weights")
    (figures,) = run_distributed(_train_two_steps, 1, {}, checkpoint_dir, True)
    return checkpoint_dir, figures


LAYOUTS = {
    "tp2_sp": dict(tp=2),
    "ep2_alltoall": dict(ep=2, moe_token_dispatcher="alltoall"),
    "ep2_allgather": dict(ep=2, moe_token_dispatcher="allgather"),
    "pp2": dict(pp=2),
    "pp2_vpp2": dict(pp=2, vpp=2),
    "dp2_distributed_optimizer": dict(use_distributed_optimizer=True),
    # context parallelism on gloo: megatron_agentic.cp_attention against megatron-core's own
    # DotProductAttention on one rank
    "cp2": dict(cp=2),
    "cp2_ep2": dict(cp=2, ep=2),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_matches_one_rank(name, reference):
    checkpoint_dir, expected = reference
    results = run_distributed(_train_two_steps, 2, LAYOUTS[name], checkpoint_dir, False)
    for rank, figures in enumerate(results):
        assert figures == pytest.approx(expected, rel=RTOL), (
            f"{name} rank {rank}: [loss1, gnorm1, loss2, gnorm2] = {figures}, "
            f"one rank gave {expected}"
        )
    # The update must have done something, or the step-2 comparison proves nothing.
    assert abs(expected[2] - expected[0]) > 1e-3


def test_cp2_tp2_on_four_ranks_matches_one_rank(reference):
    """CP=2 x TP=2 (sequence parallel inside each CP rank's half of the sequence)."""
    checkpoint_dir, expected = reference
    results = run_distributed(
        _train_two_steps, 4, dict(cp=2, tp=2), checkpoint_dir, False, timeout=600
    )
    for rank, figures in enumerate(results):
        assert figures == pytest.approx(expected, rel=RTOL), (
            f"cp2_tp2 rank {rank}: {figures}, one rank gave {expected}"
        )
