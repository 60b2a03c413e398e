"""serve: see app.py (the entry point); this file only re-exports the public names."""

from peftqa.serve.app import create_app

__all__ = ["create_app"]
