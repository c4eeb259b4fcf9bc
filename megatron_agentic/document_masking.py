"""Document masking for packed sequences: Megatron-LM's --reset-attention-mask,
--reset-position-ids and --eod-mask-loss, on CPU and on GPUs.

A training sequence packs several documents, each ending with the EOD token. With the three
options (config keys `data.reset_attention_mask`, `data.reset_position_ids`,
`data.eod_mask_loss`, Megatron-LM's meanings):
- reset_attention_mask: a token attends only to earlier tokens of its own document (a document
  ends at, and includes, its EOD token);
- reset_position_ids: position ids restart at 0 after every EOD;
- eod_mask_loss: no loss where the input token is EOD (that position would predict the first token
  of the next, unrelated document).

megatron-core's GPTDataset computes all three from the EOD token (`GPTDatasetConfig` fields of
the same names); this module decides how the mask reaches the attention:
- CPU, or a GPU without TransformerEngine: the dataset's explicit [1, s, s] boolean mask (True = masked),
  stacked into the batch as `attention_mask`; megatron-core's local attention applies it, and
  `cp_attention.ContextParallelAttention` applies it under CP (its rows sliced by
  `get_batch_on_this_cp_rank`, its columns global). O(s^2) memory: meant for tests and short runs.
- GPU with TransformerEngine (written, not yet run: the one GPU lent had no TE): no dense mask; the
  documents become TE's packed "THD" format, `PackedSeqParams(qkv_format="thd", cu_seqlens...)`,
  with cu_seqlens read off the reset position ids (which this path therefore requires). TE's fused
  attention then masks per document and its RoPE restarts per document. Limits: micro_batch_size 1,
  and CP = 1 (TE's THD under CP needs every document padded to a multiple of 2*CP, which our
  packing does not do); `check` refuses the rest with the keys named.

RoPE note: megatron-core's GPTModel rotates by absolute positions on the non-THD path (it does not
read position_ids). With the document mask this changes nothing but rounding: a RoPE score depends
only on the distance between the two tokens, which the mask keeps inside one document.
"""

from __future__ import annotations

import numpy as np
import torch

SEQUENCE_KEYS = ("tokens", "labels", "loss_mask", "position_ids")


class DocumentMaskingError(ValueError):
    """Document-masking options that cannot work with the rest of the configuration."""


def uses_packed_sequences(data, te_attention: bool) -> bool:
    """Whether document masking goes through TE's THD path instead of a dense mask.

    `te_attention`: TransformerEngine and a GPU are present (`layer_specs.transformer_engine_available`);
    a GPU without TE runs megatron-core's local attention, which takes the dense mask as on CPU."""
    return bool(data.reset_attention_mask) and te_attention


DENSE_MASK_MAX_SEQ = 16384  # a dense boolean mask is seq_length^2 bytes per sample (256 MiB here)


def check(data, parallel, te_attention: bool) -> None:
    """Raise DocumentMaskingError naming the keys if the options cannot run on this machine."""
    if data.reset_attention_mask and not te_attention and data.seq_length > DENSE_MASK_MAX_SEQ:
        raise DocumentMaskingError(
            f"data.reset_attention_mask=true without TransformerEngine builds a dense "
            f"seq_length^2 mask: data.seq_length={data.seq_length} is above {DENSE_MASK_MAX_SEQ}"
        )
    if not uses_packed_sequences(data, te_attention):
        return
    problems = []
    if not data.reset_position_ids:
        problems.append(
            "data.reset_attention_mask=true with TransformerEngine needs data.reset_position_ids=true (the "
            "packed-sequence path finds documents where the position ids restart)"
        )
    if data.micro_batch_size != 1:
        problems.append(
            f"data.reset_attention_mask=true with TransformerEngine needs data.micro_batch_size=1 "
            f"(got {data.micro_batch_size}): one packed THD sequence per micro-batch"
        )
    if parallel.cp > 1:
        problems.append(
            f"data.reset_attention_mask=true with parallel.cp={parallel.cp} with TransformerEngine is not "
            "supported: TE's THD attention under CP needs documents padded to multiples of 2*cp"
        )
    if problems:
        raise DocumentMaskingError("; ".join(problems))


def dataset_options(data, te_attention: bool) -> dict:
    """The GPTDatasetConfig fields for these options."""
    return dict(
        reset_position_ids=bool(data.reset_position_ids),
        reset_attention_mask=bool(data.reset_attention_mask),
        eod_mask_loss=bool(data.eod_mask_loss),
        create_attention_mask=bool(data.reset_attention_mask) and not te_attention,
    )


def collate(samples: list[dict], packed: bool = False) -> dict:
    """One micro-batch of GPTDataset samples: [b, s] tensors, plus `attention_mask` [b, 1, s, s]
    where the samples carry one, or `cu_seqlens` (computed here, on the host) for the THD path."""
    keys = list(SEQUENCE_KEYS)
    if samples[0].get("attention_mask") is not None:
        keys.append("attention_mask")
    batch = {key: torch.as_tensor(np.stack([np.asarray(s[key]) for s in samples])) for key in keys}
    if packed:
        if len(samples) != 1:
            raise DocumentMaskingError(
                f"packed sequences need micro_batch_size 1, got {len(samples)} samples"
            )
        batch["cu_seqlens"] = cu_seqlens_from_position_ids(batch["position_ids"])
    return batch


def cu_seqlens_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Document boundaries [0, start_1, ..., s] (int32) of one packed sequence whose position ids
    restart at 0 at each document."""
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).flatten()
    if starts.numel() == 0 or starts[0] != 0:
        starts = torch.cat([starts.new_zeros(1), starts])
    end = torch.tensor([flat.numel()], device=flat.device)
    return torch.cat([starts, end]).to(torch.int32)


def packed_seq_params(cu_seqlens: torch.Tensor):
    """TransformerEngine's THD description of a [1, s] packed micro-batch (GPU path)."""
    from megatron.core.packed_seq_params import PackedSeqParams

    max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return PackedSeqParams(
        qkv_format="thd",
        cu_seqlens_q=cu_seqlens,
        cu_seqlens_kv=cu_seqlens,
        max_seqlen_q=max_seqlen,
        max_seqlen_kv=max_seqlen,
    )


def model_kwargs(batch: dict) -> dict:
    """The attention-related keyword arguments of GPTModel.forward for this micro-batch: TE's
    packed sequences where the batch has `cu_seqlens`, else its dense mask (or none: causal)."""
    if batch.get("cu_seqlens") is not None:
        return {"attention_mask": None, "packed_seq_params": packed_seq_params(batch["cu_seqlens"])}
    return {"attention_mask": batch.get("attention_mask")}
