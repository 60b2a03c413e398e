"""Pure scoring functions: SQuAD EM/F1 as the official scripts compute them (metrics.py) and confidence
intervals over per-question scores (stats.py). A leaf: every later stage uses it, it imports nothing of peftqa."""
