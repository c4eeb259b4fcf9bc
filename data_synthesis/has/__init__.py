"""Higher-order action synthesis: multi-decision training texts from trajectories."""
