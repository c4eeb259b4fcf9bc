"""Command-line tools (also importable, e.g. `from tools.preprocess_data import main`)."""
