"""128K batching on CPU: GPTDataset samples of 131,072 tokens with their position ids and loss
mask, and the context-parallel split of such a batch against an independent reference. (The
CP=2 vs CP=1 loss comparison needs TransformerEngine attention on a GPU; the one GPU lent had no TE.)"""

from __future__ import annotations

import numpy as np
import torch

from megatron_agentic.testing.distributed import run_distributed

SEQ = 131072


def _reference_zigzag(tensor: torch.Tensor, cp: int, rank: int) -> torch.Tensor:
    chunks = tensor.chunk(2 * cp, dim=1)
    return torch.cat([chunks[rank], chunks[2 * cp - 1 - rank]], dim=1)


def _slice_on_cp_rank():
    from megatron.core import parallel_state

    from megatron_agentic import cpu_runtime
    from megatron_agentic.train_step import context_parallel_slice

    cpu_runtime.install()
    torch.distributed.init_process_group("gloo")
    parallel_state.initialize_model_parallel(context_parallel_size=2)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 151936, (1, SEQ + 1), generator=generator)
    batch = {
        "tokens": tokens[:, :-1],
        "labels": tokens[:, 1:],
        "loss_mask": (torch.rand(1, SEQ, generator=generator) > 0.1).float(),
        "position_ids": torch.arange(SEQ).unsqueeze(0),
    }
    local = context_parallel_slice(batch)
    rank = parallel_state.get_context_parallel_rank()
    for key, value in batch.items():
        assert torch.equal(local[key], _reference_zigzag(value, 2, rank)), key
    # the CP ranks' masked token counts add up to the whole sequence's
    count = local["loss_mask"].sum().reshape(1)
    torch.distributed.all_reduce(count, group=parallel_state.get_context_parallel_group())
    parallel_state.destroy_model_parallel()
    return local["position_ids"].flatten(), float(count), float(batch["loss_mask"].sum())


def test_context_parallel_split_of_a_128k_batch():
    results = run_distributed(_slice_on_cp_rank, 2)
    for _, cp_total, total in results:
        assert cp_total == total
    # every position of the sequence is on exactly one CP rank
    positions = torch.cat([positions for positions, _, _ in results])
    assert torch.equal(positions.sort().values, torch.arange(SEQ))


def test_gpt_dataset_yields_128k_samples(tmp_path):
    from megatron_agentic.data.blend import BlendDataset, DataBlend, build_gpt_datasets
    from megatron_agentic.data.indexed import IndexedDatasetWriter
    from megatron_agentic.testing.data_fixtures import qwen3_tokenizer_dir
    from megatron_agentic.tokenizer import build_tokenizer

    tokenizer = build_tokenizer("HuggingFaceTokenizer", qwen3_tokenizer_dir())
    writer = IndexedDatasetWriter(tmp_path / "long", np.int32)
    rng = np.random.default_rng(0)
    for _ in range(5):  # five 60K-token documents: samples span document boundaries
        document = list(rng.integers(0, 151000, 60000)) + [tokenizer.eod]
        writer.add_document(document, [len(document)])
    writer.finish()
    blend = DataBlend([BlendDataset("long", str(tmp_path / "long"), 1.0)], split="100,0,0")
    train, _, _ = build_gpt_datasets(
        blend, tokenizer, SEQ, seed=1, num_samples=(2, 0, 0), cache_dir=tmp_path / "cache"
    )
    sample = train[1]
    assert sample["tokens"].shape == (SEQ,) and sample["labels"].shape == (SEQ,)
    assert np.array_equal(np.asarray(sample["position_ids"]), np.arange(SEQ))
    assert np.asarray(sample["loss_mask"]).all()
    assert (np.asarray(sample["tokens"]) == tokenizer.eod).sum() >= 1
