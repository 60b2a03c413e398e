"""Command-line flags made from the typed config dataclasses (RunConfig's groups, every method's options,
SweepConfig, StudyConfig, ServeOptions), the configs built back from what was given, and the help that
shows each flag's real default: the flags cannot drift from the fields, their types, help or defaults."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Collection
from typing import Any

from peftqa.methods import METHODS, MethodSpec, get_method, method_names
from peftqa.settings.run_config import (
    PRESETS,
    RunConfig,
    group_titles,
    group_types,
    preset,
    setting_fields,
    setting_types,
)

# RunConfig fields that have no flag of their own (method_options gets one flag per option; a sweep sets
# tracking_parent).
_NO_FLAG = {"method_options", "tracking_parent"}
_OPTION_DEST = "option__"  # the argparse dest prefix of a method option's flag
_METAVARS = {int: "N", float: "X", bool: "true|false"}  # what a flag takes, by the field's type (else TEXT)


def shown(value: Any) -> str:
    """A default as help shows it: 0.001, 1e-05, auto, true, 4,8,16 (a list), none (an empty one)."""
    if isinstance(value, list | tuple):
        return ",".join(shown(v) for v in value) or "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _with_default(help_text: str, default: Any) -> str:
    """`help_text (default: X)`; a default of None, an empty list or no default at all is said in words
    by the help text itself ("default: all", "default: the method's")."""
    if any(default is nothing for nothing in (None, argparse.SUPPRESS, dataclasses.MISSING)) or default == []:
        return help_text
    return f"{help_text} (default: {shown(default)})".replace("%", "%%")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every hand-written flag's help ends with its argparse default (config flags say their field's
    default in their help already: their argparse default is None, which means "not given")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        switch = action.nargs == 0  # on when given: --force, --pdf
        if switch or not action.option_strings or action.help is None or action.help == argparse.SUPPRESS:
            return action.help
        return _with_default(action.help, action.default)


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
    """An argparse `type` that converts to `kind` with a one-line error (ranges are the configs' to check)."""
    convert: Callable[[str], Any] = _boolean if kind is bool else kind

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _number_list(kind: Callable[[str], Any]) -> Callable[[str], list]:
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field_flag(
    container: Any,
    field: dataclasses.Field,
    annotation: Any,
    dest: str | None = None,
    hidden: bool = False,
    switches: bool = True,
) -> None:
    """One flag for `field`, typed from its resolved `annotation`, its help ending in its default. Its
    argparse default is None (= not given), so presets and the dataclass's own default apply.

    Args:
        dest: where argparse puts the value (default: the field's name).
        hidden: accepted, but not listed by --help.
        switches: a bool field is a switch (--NAME, or --no-NAME when it defaults to True); False: it
            takes a value (`--NAME true`), as a method's options do.
    """
    dest = dest or field.name
    help_text = argparse.SUPPRESS if hidden else field.metadata.get("help", "")
    kind = _without_none(annotation)
    if field.metadata.get("positional"):
        container.add_argument(dest, nargs="*", default=None, help=help_text)
    elif kind is bool and switches and field.default is True:
        text = help_text if hidden else f"turn off: {help_text}"
        container.add_argument(
            "--no-" + _flag(field.name)[2:], dest=dest, action="store_false", default=None, help=text
        )
    elif kind is bool and switches:
        container.add_argument(_flag(field.name), dest=dest, action="store_true", default=None, help=help_text)
    else:
        listed = typing.get_origin(kind) is list
        parse = _number_list(typing.get_args(kind)[0]) if listed else _typed(_scalar_type(kind))
        container.add_argument(
            _flag(field.name),
            dest=dest,
            metavar=_metavar(field, kind),
            type=parse,
            default=None,
            help=help_text if hidden else _with_default(help_text, field.default),
        )


def _metavar(field: dataclasses.Field, kind: Any) -> str:
    """What a flag takes: {a,b} for a field with choices (the dataclass refuses others, in one line), N for
    a whole number, X for a number, LIST, true|false or TEXT."""
    if "choices" in field.metadata:
        return "{" + ",".join(field.metadata["choices"]) + "}"
    return _METAVARS.get(kind, "LIST" if typing.get_origin(kind) is list else "TEXT")


def add_config_flags(parser: Any, cls: type, skip: Collection[str] = ()) -> None:
    """One flag per field of the dataclass `cls` that has help metadata (settings.fields.setting).
    A bool field that defaults to True becomes `--no-NAME`, one that defaults to False a switch; a list of
    numbers is given as 1,2,3; a field marked positional takes the command's remaining arguments."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name not in skip and "help" in field.metadata:
            _add_field_flag(parser, field, hints[field.name])


def given_fields(args: argparse.Namespace, cls: type, skip: Collection[str] = ()) -> dict[str, Any]:
    """The fields of `cls` whose flags were given."""
    return {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(cls)
        if field.name not in skip and getattr(args, field.name, None) is not None
    }


def _first_sentence(text: str | None) -> str:
    return " ".join((text or "").split()).split(". ")[0].rstrip(".")


def _preset_help() -> str:
    described = "; ".join(
        f"{name}: " + ", ".join(f"{key}={shown(value)}" for key, value in values.items())
        for name, values in sorted(PRESETS.items())
    )
    return f"start from these settings instead of the defaults shown ({described}) (default: none)"


def add_run_flags(parser: argparse.ArgumentParser, skip: Collection[str] = ()) -> argparse._ArgumentGroup:
    """One flag per RunConfig setting (but `skip`), in one argument group per settings group, the method
    options accepted but listed by `peftqa methods NAME`; returns the "run" group (method, model, preset,
    output folder), for the command's own flags."""
    hints = setting_types()
    run = parser.add_argument_group("run", "what is trained, from what, and where it is written")
    groups: dict[str | None, Any] = {None: run}
    for group, field in setting_fields():
        if field.name in _NO_FLAG or field.name in skip:
            continue
        if group is not None and group not in groups:
            description = _first_sentence(group_types()[group].__doc__)
            groups[group] = parser.add_argument_group(group_titles()[group], description)
        if field.name == "method":
            help_text = f"{field.metadata['help']}: {', '.join(method_names())} (default: {field.default})"
            run.add_argument("--method", metavar="NAME", default=None, help=help_text)
            run.add_argument("--preset", choices=sorted(PRESETS), default=None, help=_preset_help())
            continue
        if field.name == "lr":  # also from:SWEEP_DIR (a sweep's best value), resolved in config_from_args
            groups[group].add_argument("--lr", metavar="X", default=None, help=field.metadata["help"])
            continue
        _add_field_flag(groups[group], field, hints[field.name])
    add_method_flags(
        parser.add_argument_group(
            "method options", "each method's own flags (--lora-r, ...): `peftqa methods NAME` lists them with defaults"
        ),
        hidden=True,
    )
    return run


def add_method_flags(container: Any, spec: MethodSpec | None = None, hidden: bool = False) -> None:
    """One flag per option of `spec`, or of every method (an option several methods share, such as
    --target-modules, once), stored as option__NAME."""
    seen: set[str] = set()
    for method in [spec] if spec is not None else METHODS.values():
        hints = typing.get_type_hints(method.options_cls)
        for field in dataclasses.fields(method.options_cls):
            if field.name not in seen:
                seen.add(field.name)
                dest = _OPTION_DEST + field.name
                _add_field_flag(container, field, hints[field.name], dest, hidden=hidden, switches=False)


def method_help(name: str) -> str:
    """`peftqa methods NAME`: the method, its default learning rate and its options, with their help and
    defaults, as `peftqa train --method NAME` takes them."""
    spec = get_method(name)
    parser = argparse.ArgumentParser(
        prog=f"peftqa train --method {name}",
        description=f"{name}: {spec.description} (default lr {spec.default_lr:g})",
        formatter_class=HelpFormatter,
        add_help=False,
    )
    add_method_flags(parser.add_argument_group(f"{name} options"), spec)
    return parser.format_help()


def config_from_args(args: argparse.Namespace, **fixed: Any) -> RunConfig:
    """Preset, then the flags given, then `fixed`; only the options that were given are passed."""
    values = preset(args.preset)
    for _, field in setting_fields():
        given = getattr(args, field.name, None)
        if given is not None:
            values[field.name] = given
    options = {
        name.removeprefix(_OPTION_DEST): value
        for name, value in vars(args).items()
        if name.startswith(_OPTION_DEST) and value is not None
    }
    values.update(fixed)
    values["method_options"] = options
    if isinstance(values.get("lr"), str):
        from peftqa.sweep import resolve_lr

        values["lr"] = resolve_lr(values["lr"])
    return RunConfig.from_dict(values)
