"""Model cards for the evaluation report: one module per model key, ``card(evaluation, out_dir) -> str``."""
