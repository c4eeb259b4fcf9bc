"""A packed GPTDataset of short documents, for the document-masking checks (tests, GPU script)."""

from __future__ import annotations

import numpy as np

SEQ = 128


def packed_dataset(root, masking: dict):
    """(4 GPTDataset samples of SEQ tokens packing short random documents, the EOD id)."""
    from megatron_agentic.data.blend import BlendDataset, DataBlend, build_gpt_datasets
    from megatron_agentic.data.indexed import IndexedDatasetWriter
    from megatron_agentic.testing.data_fixtures import make_tokenizer
    from megatron_agentic.tokenizer import build_tokenizer

    tokenizer = build_tokenizer("HuggingFaceTokenizer", str(make_tokenizer(root / "tok")))
    writer = IndexedDatasetWriter(root / "docs", np.int32)
    rng = np.random.default_rng(0)
    for _ in range(40):  # short documents: every 128-token sample holds several
        document = list(rng.integers(5, 300, int(rng.integers(8, 40)))) + [tokenizer.eod]
        writer.add_document(document, [len(document)])
    writer.finish()
    blend = DataBlend([BlendDataset("docs", str(root / "docs"), 1.0)], split="100,0,0")
    train, _, _ = build_gpt_datasets(
        blend,
        tokenizer,
        SEQ,
        seed=1,
        num_samples=(4, 0, 0),
        cache_dir=root / "cache",
        masking=masking,
    )
    return train, tokenizer.eod
