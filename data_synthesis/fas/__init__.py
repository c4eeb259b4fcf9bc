"""First-order action synthesis: questions, planning actions, reasoning actions."""
