"""One training step on megatron-core: model + DDP + optimizer setup, the loss, forward/backward.

These are the pieces the training loop (`megatron_agentic.train`) composes; the parallel-equivalence
tests use them directly. A batch is a dict of [micro_batch, seq] tensors: `tokens`, `labels`,
`loss_mask`, `position_ids` (as megatron-core's GPTDataset yields them), with document masking
also `attention_mask` (CPU) or `cu_seqlens` (GPU); see `megatron_agentic.document_masking`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
from megatron.core.distributed.finalize_model_grads import finalize_model_grads
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.transformer import TransformerConfig

from megatron_agentic import document_masking
from megatron_agentic.model import Qwen3MoEConfig, build_model


@dataclass
class StepResult:
    """What one optimizer step reports (lm_loss is the token-mean over the global batch)."""

    lm_loss: float
    grad_norm: float
    update_successful: bool
    num_tokens: int


def setup_model_and_optimizer(
    model_cfg: Qwen3MoEConfig,
    config: TransformerConfig,
    optimizer_cfg: OptimizerConfig,
    seq_length: int,
    use_distributed_optimizer: bool,
):
    """Build this rank's model chunks wrapped in megatron-core DDP, and their optimizer."""
    chunks = build_model(model_cfg, config, seq_length)
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=False,
        use_distributed_optimizer=use_distributed_optimizer,
    )
    model = [
        DistributedDataParallel(
            config=config,
            ddp_config=ddp_config,
            module=chunk,
            # Only the first chunk's buckets are delayed with overlap; no overlap here.
            disable_bucketing=index > 0,
        )
        for index, chunk in enumerate(chunks)
    ]
    for chunk in model:
        chunk.broadcast_params()
    config.finalize_model_grads_func = finalize_model_grads
    config.no_sync_func = [chunk.no_sync for chunk in model]
    if len(model) == 1:
        config.no_sync_func = config.no_sync_func[0]
    optimizer = get_megatron_optimizer(optimizer_cfg, model)
    return model, optimizer


def loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Masked token losses summed over the micro-batch; megatron-core divides by the count."""
    losses = output_tensor.float()
    loss_mask = loss_mask.reshape(-1).float()
    loss_sum = torch.sum(losses.reshape(-1) * loss_mask)
    num_tokens = loss_mask.sum().to(torch.int)
    reporting = torch.stack([loss_sum.detach(), num_tokens.float()])
    return loss_sum, num_tokens, {"lm loss": reporting}


def context_parallel_slice(batch: dict) -> dict:
    """This context-parallel rank's part of every sequence (megatron-core's load-balanced zigzag:
    2*CP chunks, rank r keeps chunks r and 2*CP-1-r); the whole batch when CP is 1."""
    if parallel_state.get_context_parallel_world_size() == 1:
        return batch
    from megatron.core.utils import get_batch_on_this_cp_rank

    return get_batch_on_this_cp_rank(
        dict(batch), is_hybrid_cp=False, cp_group=parallel_state.get_context_parallel_group()
    )


def forward_step(data_iterator, model):
    """megatron-core's forward_step_func: one micro-batch through this stage's chunk."""
    batch = context_parallel_slice(next(data_iterator))
    output = model(
        batch["tokens"],
        batch["position_ids"],
        labels=batch["labels"],
        **document_masking.model_kwargs(batch),  # dense mask (CPU) or THD (GPU), if any
    )
    return output, partial(loss_func, batch["loss_mask"])


def train_step(
    model,
    optimizer,
    config: TransformerConfig,
    data_iterator,
    num_microbatches: int,
    micro_batch_size: int,
    seq_length: int,
) -> StepResult:
    """Forward/backward over `num_microbatches`, then one optimizer step."""
    for chunk in model:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    outputs = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=data_iterator,
        model=model,
        num_microbatches=num_microbatches,
        seq_length=seq_length,
        micro_batch_size=micro_batch_size,
        forward_only=False,
    )
    update_successful, grad_norm, _ = optimizer.step()
    loss_sum, num_tokens = reduce_lm_loss(outputs)
    return StepResult(
        lm_loss=loss_sum / max(num_tokens, 1),
        grad_norm=float(grad_norm) if grad_norm is not None else float("nan"),
        update_successful=bool(update_successful),
        num_tokens=int(num_tokens),
    )


def reduce_lm_loss(outputs) -> tuple[float, float]:
    """(loss sum, token count) over the global batch, known on every rank."""
    totals = torch.zeros(2, dtype=torch.float64, device="cuda")  # NCCL reduces GPU tensors
    if parallel_state.is_pipeline_last_stage(ignore_virtual=True):
        for record in outputs:
            totals += record["lm loss"].double()
    # Sum over data-parallel replicas, then hand the last stage's totals to every stage.
    torch.distributed.all_reduce(
        totals, group=parallel_state.get_data_parallel_group(with_context_parallel=True)
    )
    torch.distributed.all_reduce(totals, group=parallel_state.get_pipeline_model_parallel_group())
    return float(totals[0]), float(totals[1])
