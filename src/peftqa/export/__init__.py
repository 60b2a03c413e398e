"""export: see exporter.py (the entry point); this file only re-exports the public names."""

from peftqa.export.exporter import export_run

__all__ = ["export_run"]
