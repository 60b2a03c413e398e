"""Questions -> model inputs: token windows over each context with labels and offsets (windows.py), built once
and cached (cache.py), and grouped into padded batches (batches.py)."""
