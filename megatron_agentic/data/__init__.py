"""Data: JSONL input, Megatron indexed datasets (.bin/.idx), and stage blends over GPTDataset."""
