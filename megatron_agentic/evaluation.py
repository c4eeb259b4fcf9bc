"""Validation loss: forward-only passes over the same validation batches every time.

Evaluating always the first `eval_iters` global batches of the validation split makes the
figures of different iterations (and runs) comparable. Every rank takes part (pipeline stages
exchange activations); every rank gets the same loss back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from megatron_agentic.data.batches import GlobalBatches


@dataclass(frozen=True)
class Validation:
    """The validation loss of `model` over `eval_iters` global batches of `batches`."""

    batches: GlobalBatches
    seq_length: int
    eval_iters: int

    def lm_loss(self, model) -> float:
        from megatron.core.pipeline_parallel import get_forward_backward_func

        from megatron_agentic.train_step import forward_step, reduce_lm_loss

        for chunk in model:
            chunk.eval()
        totals = np.zeros(2)
        with torch.no_grad():
            for step in range(self.eval_iters):
                outputs = get_forward_backward_func()(
                    forward_step_func=forward_step,
                    data_iterator=self.batches.data_iterator(step * self.batches.global_batch_size),
                    model=model,
                    num_microbatches=self.batches.num_micro,
                    seq_length=self.seq_length,
                    micro_batch_size=self.batches.micro_batch_size,
                    forward_only=True,
                )
                totals += reduce_lm_loss(outputs)
        for chunk in model:
            chunk.train()
        return float(totals[0] / max(totals[1], 1))


def perplexity(loss: float) -> float:
    """exp(loss), capped (a diverged model's loss would overflow)."""
    return math.exp(min(loss, 50.0))
