"""The flags and their help: every default a command's --help shows is the default of the dataclass field
(or, for a hand-written flag, the argparse default) that the flag sets, read back from the help text."""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pytest

from peftqa.cli.commands import build_parser, main
from peftqa.cli.flags import shown
from peftqa.methods import METHODS
from peftqa.serve.options import ServeOptions
from peftqa.settings.run_config import setting_fields
from peftqa.study.pipeline import StudyConfig
from peftqa.sweep.sweep_config import SweepConfig

_NO_DEFAULT = (None, argparse.SUPPRESS, dataclasses.MISSING)


def _subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(words, parser) of every command and sub-command under `parser`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subcommands(sub, (*path, name))


def _fields_by_dest(words: tuple[str, ...]) -> dict[str, dataclasses.Field]:
    """The dataclass fields that the flags of the command `words` set, by argparse dest."""
    run_settings = {field.name: field for _, field in setting_fields()}
    if words == ("train",):
        return run_settings
    if words == ("sweep",):  # the sweep's own fields come first: its trial size is not a run's
        return {**run_settings, **{field.name: field for field in dataclasses.fields(SweepConfig)}}
    owner = {("study",): StudyConfig, ("serve",): ServeOptions}.get(words)
    return {field.name: field for field in dataclasses.fields(owner)} if owner else {}


def _help_entries(text: str) -> dict[str, str]:
    """Each option or positional of a --help text (columns wide enough for no wrapping inside a line)
    and its help, whitespace collapsed."""
    entries: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        started = re.match(r"^  (--?[\w-]+|[a-z_]+)\b.*?(?:  +(\S.*))?$", line)
        if started:
            current = started[1]
            entries[current] = [started[2] or ""]
        elif current and line.startswith("      "):
            entries[current].append(line.strip())
        else:
            current = None
    return {name: " ".join(" ".join(parts).split()) for name, parts in entries.items()}


def _help_of(capsys, monkeypatch, *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def _defaults(parser: argparse.ArgumentParser, fields: dict[str, dataclasses.Field]) -> dict[str, Any]:
    """{flag: its default} for each listed flag of `parser` that takes a value and may be left out: the
    default of the field the flag sets, or its argparse default where no field does."""
    return {
        next(iter(action.option_strings), action.dest): (
            fields[action.dest].default if action.dest in fields else action.default
        )
        for action in parser._actions
        if action.help != argparse.SUPPRESS and action.nargs != 0 and not action.required
    }


def _check_defaults_shown(text: str, defaults: dict[str, Any]) -> int:
    """Asserts that each flag of `defaults` is listed in `text` and ends its help with its default, or
    says in words what happens when it is not given; returns how many showed a value."""
    entries = _help_entries(text)
    showed = 0
    for name, default in defaults.items():
        help_text = entries[name]
        if any(default is nothing for nothing in _NO_DEFAULT) or default in ([], ()):
            assert "default" in help_text, f"{name} says nothing of its default: {help_text!r}"
            continue
        assert help_text.count("default") == 1, f"{name} speaks of more than one default: {help_text!r}"
        assert help_text.endswith(f"(default: {shown(default)})"), f"{name}: {help_text!r}, default {default!r}"
        showed += 1
    return showed


def test_every_command_shows_the_defaults_of_the_fields_its_flags_set(capsys, monkeypatch):
    commands = list(_subcommands(build_parser()))
    assert {words[0] for words, _ in commands} >= {"train", "sweep", "study", "serve", "predict", "score", "export"}
    showed = 0
    for words, parser in commands:
        text = _help_of(capsys, monkeypatch, *words)
        showed += _check_defaults_shown(text, _defaults(parser, _fields_by_dest(words)))
    assert showed > 50  # the check read the help, not an empty text


def test_methods_name_lists_that_method_s_options_with_their_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    accepted = {action.dest for action in dict(_subcommands(build_parser()))[("train",)]._actions}
    for name, spec in METHODS.items():
        assert main(["methods", name]) == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: peftqa train --method {name}")
        options = dataclasses.fields(spec.options_cls)
        assert {f"option__{option.name}" for option in options} <= accepted  # train takes them all
        _check_defaults_shown(text, {"--" + option.name.replace("_", "-"): option.default for option in options})


def test_train_help_is_grouped_and_leaves_the_method_options_to_peftqa_methods(capsys, monkeypatch):
    text = _help_of(capsys, monkeypatch, "train")
    titles = [line[:-1] for line in text.splitlines() if re.fullmatch(r"[a-z ]+:", line)]
    assert titles == [
        "options",
        "run",
        "data",
        "optimisation",
        "windows and scoring",
        "speed levers",
        "tracking",
        "method options",
    ]
    assert "`peftqa methods NAME`" in text and "--lora-r" not in text.split("method options:")[0]
    args = build_parser().parse_args(["train", "--lora-r", "4", "--prefix-projection", "true"])
    assert (args.option__lora_r, args.option__prefix_projection) == (4, True)


def test_sweep_shows_its_own_trial_size_and_offers_no_flag_it_would_ignore(capsys, monkeypatch):
    entries = _help_entries(_help_of(capsys, monkeypatch, "sweep"))
    assert entries["--eval-limit"].endswith("(default: 1000)") and "all" not in entries["--eval-limit"]
    assert entries["--train-fraction"].endswith("(default: 0.1)") and entries["--epochs"].endswith("(default: 1)")
    assert not {"--lr", "--max-steps", "--eval-split"} & set(entries)
    # The held-out evaluations are the successive-halving rungs, their sample the sweep's --eval-limit.
    assert not {"--eval-every-steps", "--eval-growth", "--validation-limit"} & set(entries)
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["sweep", "--max-steps", "3"])
    assert exited.value.code == 2
