"""The `peftqa` command: subcommands that turn flags into configs and call the library (commands.py), flags
generated from the config dataclasses (flags.py), and what `peftqa --help` says first (usage.py)."""

from peftqa.cli.commands import main

__all__ = ["main"]
