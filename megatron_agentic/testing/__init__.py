"""Helpers shared by the tests and the benchmarks (never used by training itself): small
corpora and tokenizers, tiny HF models, the tiny training data and runs, multi-rank runners, the
conversion checks and the vLLM CPU environment. They live in the package, not in tests/, so that
benchmarks and the GPU script can use them too."""
