"""Command-line flags made from the typed config dataclasses (RunConfig and every method's options,
SweepConfig, StudyConfig), and the configs built back from what was given: the flags cannot drift from
the fields, their types or their help."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Collection
from typing import Any

from peftqa.methods import METHODS, method_names
from peftqa.settings.run_config import PRESETS, RunConfig, preset, setting_fields, setting_types

# RunConfig fields that have no flag of their own (method_options gets one flag per option; a sweep sets
# tracking_parent).
_NO_FLAG = {"method_options", "tracking_parent"}


def _without_none(annotation: Any) -> Any:
    """`int | None` -> int; anything else as it is."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _scalar_type(annotation: Any) -> type:
    """int / float / str / bool from a resolved field type such as `int | None`."""
    annotation = _without_none(annotation)
    return annotation if annotation in (int, float, str, bool) else str


def _boolean(text: str) -> bool:
    """`true`/`false` (also yes/no, 1/0) for a method's on/off option, given as `--option true`."""
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in words:
        raise ValueError(text)
    return words[text.lower()]


def _typed(kind: type) -> Callable[[str], Any]:
    """An argparse `type` that converts to `kind` with a one-line error (ranges are RunConfig's to check)."""
    convert: Callable[[str], Any] = _boolean if kind is bool else kind

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _option_help() -> dict[str, tuple[type, str]]:
    """Each method option's type and help; an option several methods share (--target-modules) lists
    every method's own meaning, so `--help` does not show one method's text for all."""
    helps: dict[str, dict[str, list[str]]] = {}
    kinds: dict[str, type] = {}
    for spec in METHODS.values():
        hints = typing.get_type_hints(spec.options_cls)
        for option in dataclasses.fields(spec.options_cls):
            kinds[option.name] = _scalar_type(hints[option.name])
            text = option.metadata.get("help", "")
            helps.setdefault(option.name, {}).setdefault(text, []).append(spec.name)
    return {
        name: (kinds[name], "; ".join(f"[{', '.join(sorted(users))}] {text}" for text, users in by_text.items()))
        for name, by_text in helps.items()
    }


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field and per method option, with the field's help; all default to None
    (= not given), so presets and RunConfig's own defaults apply."""
    hints = setting_types()
    for _, field in setting_fields():
        if field.name in _NO_FLAG:
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help")
        if field.name == "method":
            parser.add_argument(flag, default=None, help=f"one of: {', '.join(method_names())} (default lora)")
            continue
        # --lr also takes from:SWEEP_DIR (a sweep's best value), resolved in config_from_args.
        kind = str if field.name == "lr" else _typed(_scalar_type(hints[field.name]))
        parser.add_argument(flag, type=kind, default=None, help=help_text)
    for name, (kind, help_text) in _option_help().items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"option__{name}",
            metavar=name.upper(),
            type=_typed(kind),
            default=None,
            help=help_text,
        )
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="start from these settings")


def config_from_args(args: argparse.Namespace, **fixed: Any) -> RunConfig:
    """Preset, then the flags given, then `fixed`; only the options that were given are passed."""
    values = preset(args.preset)
    for _, field in setting_fields():
        given = getattr(args, field.name, None)
        if given is not None:
            values[field.name] = given
    options = {
        name.removeprefix("option__"): value
        for name, value in vars(args).items()
        if name.startswith("option__") and value is not None
    }
    values.update(fixed)
    values["method_options"] = options
    if isinstance(values.get("lr"), str):
        from peftqa.sweep import resolve_lr

        values["lr"] = resolve_lr(values["lr"])
    return RunConfig.from_dict(values)


def _number_list(kind: Callable[[str], Any]) -> Callable[[str], list]:
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: Collection[str] = ()) -> None:
    """One flag per field of the dataclass `cls` that has help metadata (config.setting), typed from the
    field's annotation; all default to None (= not given), so the dataclass's own defaults apply.
    A bool field that defaults to True becomes `--no-NAME`; a list of numbers is given as 1,2,3."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or "help" not in field.metadata:
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata["help"]
        kind = _without_none(hints[field.name])
        if kind is bool and field.default is True:
            parser.add_argument(
                "--no-" + flag[2:], dest=field.name, action="store_false", default=None, help=f"turn off: {help_text}"
            )
        elif kind is bool:
            parser.add_argument(flag, dest=field.name, action="store_true", default=None, help=help_text)
        elif typing.get_origin(kind) is list:
            parser.add_argument(flag, type=_number_list(typing.get_args(kind)[0]), default=None, help=help_text)
        else:
            default = "" if field.default is None else f" (default {field.default})"
            choices = field.metadata.get("choices")
            parser.add_argument(
                flag, type=_typed(_scalar_type(kind)), choices=choices, default=None, help=help_text + default
            )


def given_fields(args: argparse.Namespace, cls: type, skip: Collection[str] = ()) -> dict[str, Any]:
    """The fields of `cls` whose flags were given."""
    return {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(cls)
        if field.name not in skip and getattr(args, field.name, None) is not None
    }
