"""Offline synthesis of agentic training text: open-world memory, FAS and HAS (Agentic CPT).

Stages (each a resumable, shardable JSONL -> JSONL step; `python -m data_synthesis --help`):
memory -> questions -> planning -> reasoning -> has -> finalize (dedup, decontamination, stats).
"""
