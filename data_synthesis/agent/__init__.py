"""The ReAct agent: the loop (policies: LLM or scripted heuristic), answer judging and
resumable rollouts. See loop.py, heuristic.py, judge.py, rollouts.py."""
