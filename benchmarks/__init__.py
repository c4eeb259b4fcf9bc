"""Benchmark scripts (importable for their CPU tests)."""
