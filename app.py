"""The original entry point of the web page, kept so that `python app.py` still works.

It is `peftqa serve` (waitress, the newest LoRA and (IA)3 runs); any flag or run directory is
passed through, e.g. `python app.py runs/quick-lora runs/quick-ia3 --port 8000`.
"""

from __future__ import annotations

import sys

from peftqa.cli.commands import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
