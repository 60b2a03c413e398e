"""One training loop for every method (loop.py: `train`) and what it needs: preparation of data, model and
optimiser (prepare.py), checkpoints for --resume (checkpoint.py), the loss meter (meter.py), the hooks that let
early stopping, tracking and callers watch the loop (hooks.py, early_stopping.py, tracking.py), data-parallel
plumbing (parallel.py) and the speed levers (levers/)."""
