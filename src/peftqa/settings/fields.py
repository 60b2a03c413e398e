"""How a setting is declared: a dataclass field with the help text `--help` shows and what `--resume`
may do with it. Every config dataclass (RunConfig's groups, SweepConfig, StudyConfig, ServeOptions)
declares its settings this way, so flags, help and run.json are made from the fields."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from peftqa.checks import Range

# metadata["resume"] of a setting that may differ between an interrupted run and its resumption.
MAY_CHANGE = "may change"


def setting(
    default: Any,
    help: str,
    *,
    within: Range | None = None,
    choices: tuple[str, ...] | None = None,
    regex: bool = False,
    resume: str | None = None,
    positional: bool = False,
) -> Any:
    """A dataclass field whose help text `peftqa --help` shows (the CLI makes a flag of it and reads
    `metadata["help"]`; a default other than None is added to the help, so the text says a None
    default in words: "default: all").

    Args:
        within: the numbers it takes (peftqa.checks: finite, and in this range); every number a config
            holds declares one, checked by checks.check_fields when the config is made.
        choices: the values the flag takes.
        regex: a regular expression, compiled when the config is made.
        resume: MAY_CHANGE when `--resume` may continue a run with another value: the result is the same
            (how often losses are read) or the value only says where things are (files, tracking).
        positional: the command's remaining arguments, rather than a flag.
    """
    metadata: dict[str, Any] = {"help": help}
    if within is not None:
        metadata["range"] = within
    if choices is not None:
        metadata["choices"] = choices
    if regex:
        metadata["regex"] = True
    if resume is not None:
        metadata["resume"] = resume
    if positional:
        metadata["positional"] = True
    return field(default=default, metadata=metadata)
