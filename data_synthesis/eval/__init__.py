"""Agentic evaluation of a served model: question sets with gold answers (our held-out
synthesized questions, BrowseComp-style and GAIA-style files), the ReAct agent over the offline
environment, Pass@1/Pass@k, turns, tool calls and failure reasons. `python -m data_synthesis.eval`.
"""
