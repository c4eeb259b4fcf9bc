"""Document masking (integration: real GPTDataset, real tiny Qwen3-MoE on one gloo rank).

A packed 128-token sample of megatron-core's GPTDataset, built with data.reset_attention_mask,
data.reset_position_ids and data.eod_mask_loss, goes through the model once; each document of that
sample (split at its EOD tokens) then goes through the same model alone. The packed loss must equal
the token-weighted mean of the documents' own losses - which fails if a token sees another
document, if the position ids are wrong, or if an EOD position keeps its loss. Without masking the
two must differ (else the test proves nothing). Unit checks of the GPU (THD) helpers run on CPU too.
"""

from __future__ import annotations

import pytest
import torch

from megatron_agentic.testing.distributed import run_distributed
from megatron_agentic.testing.masking import SEQ
from megatron_agentic.testing.masking import packed_dataset as _dataset


def _losses(root: str, masking: dict):
    from pathlib import Path

    from megatron_agentic import document_masking, parallel
    from megatron_agentic.model import build_model, get_preset, transformer_config

    par = parallel.ParallelConfig()
    parallel.initialize(par)
    model_cfg = get_preset("tiny", vocab_size=512)
    (model,) = build_model(model_cfg, transformer_config(model_cfg, par), SEQ)
    model.eval()
    dataset, eod = _dataset(Path(root), masking)
    batch = document_masking.collate([dataset[2]])
    with torch.no_grad():
        packed = model(
            batch["tokens"],
            batch["position_ids"],
            labels=batch["labels"],
            **document_masking.model_kwargs(batch),
        )
        packed_loss = float((packed * batch["loss_mask"]).sum() / batch["loss_mask"].sum())
        # each document alone: split after every EOD; causal attention, positions from 0
        tokens = batch["tokens"][0]
        ends = (torch.nonzero(tokens == eod).flatten() + 1).tolist()
        bounds = [0] + [e for e in ends if e < SEQ] + [SEQ]
        total, count = 0.0, 0.0
        for start, end in zip(bounds[:-1], bounds[1:]):
            doc = tokens[start:end].unsqueeze(0)
            alone = model(
                doc,
                torch.arange(end - start).unsqueeze(0),
                attention_mask=None,
                labels=batch["labels"][:, start:end],
            )
            mask = (doc != eod).float()  # eod_mask_loss: no loss at an EOD input
            total += float((alone * mask).sum())
            count += float(mask.sum())
    parallel.destroy()
    return packed_loss, total / count, len(bounds) - 1, float(batch["loss_mask"].sum()), count


ON = dict(
    reset_position_ids=True,
    reset_attention_mask=True,
    eod_mask_loss=True,
    create_attention_mask=True,
)


def test_packed_loss_equals_token_weighted_document_losses(tmp_path):
    (result,) = run_distributed(_losses, 1, str(tmp_path), ON)
    packed, per_document, documents, packed_tokens, document_tokens = result
    assert documents >= 3, "the sample must pack several documents"
    assert packed_tokens == document_tokens
    assert packed == pytest.approx(per_document, rel=1e-5)


def test_without_masking_the_losses_differ(tmp_path):
    off = dict(ON, reset_attention_mask=False, create_attention_mask=False)
    (result,) = run_distributed(_losses, 1, str(tmp_path), off)
    packed, per_document = result[:2]
    assert abs(packed - per_document) > 1e-3


def test_thd_boundaries_from_reset_position_ids():
    from megatron_agentic import document_masking

    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    cu = document_masking.cu_seqlens_from_position_ids(position_ids)
    assert cu.tolist() == [0, 3, 5, 9] and cu.dtype == torch.int32
    params = document_masking.packed_seq_params(cu)
    assert params.qkv_format == "thd" and params.max_seqlen_q == 4
    # a sample that starts inside a document (positions not 0) still starts a segment at 0
    assert document_masking.cu_seqlens_from_position_ids(torch.tensor([[7, 8, 0, 1]])).tolist() == [
        0,
        2,
        4,
    ]


def test_gpu_path_refuses_what_it_cannot_run():
    from megatron_agentic import document_masking
    from megatron_agentic.config import DataSection
    from megatron_agentic.parallel import ParallelConfig

    data = DataSection(reset_attention_mask=True, reset_position_ids=False, micro_batch_size=2)
    with pytest.raises(document_masking.DocumentMaskingError) as error:
        document_masking.check(data, ParallelConfig(cp=2), te_attention=True)
    for key in ("data.reset_position_ids", "data.micro_batch_size", "parallel.cp=2"):
        assert key in str(error.value)
    document_masking.check(
        data, ParallelConfig(cp=2), te_attention=False
    )  # dense mask on CPU: fine
    long = DataSection(reset_attention_mask=True, seq_length=131072)
    with pytest.raises(document_masking.DocumentMaskingError, match="data.seq_length=131072"):
        document_masking.check(long, ParallelConfig(), te_attention=False)
