"""sweep: see search.py (the entry point); this file only re-exports the public names."""

from peftqa.sweep.search import run_sweep
from peftqa.sweep.summary import edge_warnings, pick_best, read_sweep, resolve_lr, write_sweep
from peftqa.sweep.sweep_config import SweepConfig

__all__ = ["SweepConfig", "edge_warnings", "pick_best", "read_sweep", "resolve_lr", "run_sweep", "write_sweep"]
