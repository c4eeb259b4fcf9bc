"""The synthesis run machinery on HF datatrove: executors, streaming input, partitioned memory,
checkpoints, fingerprints, progress and the run summary.

The stage methods (what each stage computes) live in memory.py, fas/ and has/ behind
data_synthesis.stage_api; this package only decides who reads what, where outputs go, and how a
killed or re-launched run resumes. Layout of a run directory is documented in runner.py.
"""
