"""This rank's micro-batches of each global batch, in Megatron-LM's pretraining-sampler order.

The trainer and the evaluation both read a GPTDataset through `GlobalBatches`: global batch `g`
starts at sample `consumed = g * global_batch_size`, and micro-batch m of data-parallel rank r
holds samples `consumed + m*mbs*dp + r*mbs + [0, mbs)`. The position is the only state, so a
resumed run continues exactly where it stopped (the checkpoint stores `consumed`).
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron_agentic import document_masking


@dataclass(frozen=True)
class GlobalBatches:
    """How one global batch is split over micro-batches and data-parallel ranks."""

    dataset: object  # a GPTDataset (indexable; samples are dicts of numpy arrays)
    micro_batch_size: int
    num_micro: int  # micro-batches per rank per global batch
    dp_rank: int
    dp_size: int
    num_chunks: int = 1  # model chunks (virtual pipeline stages)
    packed: bool = (
        False  # document masking through TE's THD path (megatron_agentic.document_masking)
    )

    @property
    def global_batch_size(self) -> int:
        return self.micro_batch_size * self.num_micro * self.dp_size

    def micro_batches(self, consumed: int):
        """A generator of this rank's micro-batches of the global batch starting at `consumed`."""
        for micro in range(self.num_micro):
            first = consumed + (micro * self.dp_size + self.dp_rank) * self.micro_batch_size
            samples = [self.dataset[first + i] for i in range(self.micro_batch_size)]
            batch = document_masking.collate(samples, self.packed)
            yield {key: value.cuda(non_blocking=True) for key, value in batch.items()}

    def data_iterator(self, consumed: int):
        """What megatron-core's schedules take: the micro-batch iterator, or one per model chunk
        (the interleaved schedule)."""
        batches = self.micro_batches(consumed)
        if self.num_chunks == 1:
            return batches
        batches = list(batches)
        return [iter(batches) for _ in range(self.num_chunks)]
