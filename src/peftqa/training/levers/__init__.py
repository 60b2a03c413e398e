"""levers: see speed_levers.py (the entry point); this file only re-exports the public names."""

from peftqa.training.levers.speed_levers import SpeedLevers

__all__ = ["SpeedLevers"]
