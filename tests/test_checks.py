"""The one check of a config's values: ranges said as flags are, and every number a config holds declares one."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from peftqa.checks import COUNT, FINITE, FRACTION, POSITIVE, SEED, Range, check_value, problem
from peftqa.errors import PeftqaError
from peftqa.serve.options import ServeOptions
from peftqa.settings.run_config import group_types
from peftqa.study.pipeline import StudyConfig
from peftqa.sweep.sweep_config import SweepConfig


def test_ranges_read_as_a_person_would_write_them():
    assert [str(r) for r in (POSITIVE, COUNT, FRACTION, SEED, FINITE)] == [
        "> 0", ">= 1", "in [0, 1)", "in [0, 4294967295]", "",
    ]  # fmt: skip
    assert str(Range(above=0, at_most=1)) == "in (0, 1]" and str(Range(below=0.5)) == "< 0.5"


@pytest.mark.parametrize(
    ("value", "metadata", "expected"),
    [
        (math.inf, {"range": POSITIVE}, "must be a finite number > 0, got inf"),
        (math.nan, {}, "must be a finite number, got nan"),
        (-1, {"range": SEED}, "must be a whole number in [0, 4294967295], got -1"),
        (0, {}, None),  # a whole number without a range: any
        (0, {"range": COUNT}, "must be a whole number >= 1, got 0"),
        ([1e-3, -1.0], {"range": POSITIVE}, "must be a finite number > 0, got -1.0"),  # item by item
        (None, {"range": COUNT}, None),  # not given: the default applies
        (True, {"range": COUNT}, None),  # a switch is no number
        ("fp16", {"choices": ("auto", "fp32")}, "must be one of auto, fp32, got 'fp16'"),
        (
            "(q|",
            {"regex": True},
            "not a valid regular expression (missing ), unterminated subpattern at position 0): '(q|'",
        ),
        ("q_lin,v_lin", {"regex": True}, None),
    ],
)
def test_problem_names_what_is_wrong(value, metadata, expected):
    assert problem(value, metadata) == expected


def test_a_whole_number_without_a_range_takes_the_one_given_for_them():
    assert problem(0, {}, whole_numbers=COUNT) == "must be a whole number >= 1, got 0"
    assert problem(0, {"range": Range(at_least=0)}, whole_numbers=COUNT) is None  # its own range wins
    with pytest.raises(PeftqaError, match=r"^--top-k: must be a whole number >= 1, got -1$"):
        check_value("--top-k", -1, COUNT)


def _numbers(cls: type) -> list[str]:
    """The fields of `cls` that hold numbers (int, float, or a list of them, None allowed)."""
    names = []
    for name, annotation in typing.get_type_hints(cls).items():
        kinds = set(typing.get_args(annotation)) or {annotation}
        kinds |= {arg for kind in kinds for arg in typing.get_args(kind)}  # list[float] -> float
        if kinds & {int, float}:
            names.append(name)
    return names


@pytest.mark.parametrize("cls", [*group_types().values(), SweepConfig, StudyConfig, ServeOptions])
def test_every_number_a_config_holds_declares_its_range(cls):
    fields = {field.name: field for field in dataclasses.fields(cls)}
    numbers = _numbers(cls)
    assert numbers, cls
    assert [name for name in numbers if "range" not in fields[name].metadata] == []
