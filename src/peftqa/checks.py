"""The one check of a config's values, made when the config is: every number finite and in the range its
field declares (`metadata={"range": Range(...)}`), every value one of its field's `choices`, every regular
expression compiled. Each config dataclass (RunConfig's groups, SweepConfig, StudyConfig, ServeOptions) calls
`check_fields` from its __post_init__, and MethodSpec.make_options `check_values` on a method's options, so bad
input is refused in one line that names its flag, before any folder is made or any model loads."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from peftqa.errors import PeftqaError

SEED_MAX = 2**32 - 1  # numpy's seeds are 0 .. 2**32 - 1


@dataclass(frozen=True)
class Range:
    """The numbers a field takes: finite, and within the bounds given (None: no bound on that side)."""

    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    below: float | None = None

    def holds(self, value: float) -> bool:
        return (
            math.isfinite(value)
            and (self.at_least is None or value >= self.at_least)
            and (self.above is None or value > self.above)
            and (self.at_most is None or value <= self.at_most)
            and (self.below is None or value < self.below)
        )

    def __str__(self) -> str:
        """'> 0', '>= 1', 'in [0, 1)', 'in [1, 65535]'; '' when only finiteness is asked."""
        low = self.at_least if self.at_least is not None else self.above
        high = self.at_most if self.at_most is not None else self.below
        if low is not None and high is not None:
            left, right = "[" if self.at_least is not None else "(", "]" if self.at_most is not None else ")"
            return f"in {left}{_number(low)}, {_number(high)}{right}"
        if low is not None:
            return f"{'>=' if self.at_least is not None else '>'} {_number(low)}"
        if high is not None:
            return f"{'<=' if self.at_most is not None else '<'} {_number(high)}"
        return ""


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


POSITIVE = Range(above=0)  # a rate, a scale, a length of training
COUNT = Range(at_least=1)  # a size, a count, a number of steps
NOT_NEGATIVE = Range(at_least=0)
FRACTION = Range(at_least=0, below=1)  # a share that cannot be all: dropout, warm-up
SEED = Range(at_least=0, at_most=SEED_MAX)
FINITE = Range()  # any finite number


def flag(name: str) -> str:
    """The flag of a field: `lora_r` -> `--lora-r`."""
    return "--" + name.replace("_", "-")


def problem(value: Any, metadata: Any, whole_numbers: Range | None = None) -> str | None:
    """What is wrong with `value` for a field with this metadata ("must be ..., got ..."), or None. None
    values are not checked (not given: the default applies); a list is checked item by item.

    Args:
        whole_numbers: the range of an int field that declares none (method options: COUNT).
    """
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return next((p for p in (problem(item, metadata, whole_numbers) for item in value) if p), None)
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(map(str, choices))}, got {value!r}"
    if metadata.get("regex") and isinstance(value, str):
        try:
            re.compile(value)
        except re.error as error:
            return f"not a valid regular expression ({error}): {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    whole = isinstance(value, int)
    allowed = metadata.get("range") or (whole_numbers if whole else None) or FINITE
    if allowed.holds(value):
        return None
    kind = "a whole number" if whole else "a finite number"
    return f"must be {kind}{' ' + str(allowed) if str(allowed) else ''}, got {value}"


def check_fields(config: Any, whole_numbers: Range | None = None) -> None:
    """Refuse the first field of the dataclass `config` whose value `problem` finds wrong, naming its flag:
    "--epochs: must be a finite number > 0, got inf".

    Raises:
        PeftqaError: that line.
    """
    for field in dataclasses.fields(config):
        wrong = problem(getattr(config, field.name), field.metadata, whole_numbers)
        if wrong:
            raise PeftqaError(f"{flag(field.name)}: {wrong}")


def check_values(cls: type, values: dict[str, Any], whole_numbers: Range | None = None) -> None:
    """check_fields for the values a dataclass is about to be made of (by field name), so that its
    __post_init__ relates values already in range."""
    for field in dataclasses.fields(cls):
        wrong = problem(values.get(field.name), field.metadata, whole_numbers) if field.name in values else None
        if wrong:
            raise PeftqaError(f"{flag(field.name)}: {wrong}")


def check_value(name: str, value: Any, allowed: Range) -> None:
    """The same check for one value that no dataclass holds (a function's argument): `name` is its flag."""
    wrong = problem(value, {"range": allowed})
    if wrong:
        raise PeftqaError(f"{name}: {wrong}")
