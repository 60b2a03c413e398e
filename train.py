"""The original entry point, kept for people who follow the original instructions:

    python train.py --model_type {lora,ia3} --epochs 3

is `peftqa train --method ... --output-dir backend/<method>`; any other flag is passed through.
"""

from __future__ import annotations

import argparse
import sys

from peftqa.cli.commands import main as peftqa_main


def translate(argv: list[str]) -> list[str]:
    """The old flags -> `peftqa train` arguments."""
    # allow_abbrev off: `--model` (passed through) must not be read as an abbreviation of --model_type.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model_type", default="lora", help="the method: lora, ia3, full, ...")
    parser.add_argument("--epochs", default=None)
    known, rest = parser.parse_known_args(argv)
    arguments = ["train", "--method", known.model_type]
    if known.epochs is not None:
        arguments += ["--epochs", known.epochs]
    if "--output-dir" not in rest:
        arguments += ["--output-dir", f"backend/{known.model_type}"]
    return arguments + rest


if __name__ == "__main__":
    sys.exit(peftqa_main(translate(sys.argv[1:])))
