"""settings.run_config: values that cannot work are refused when the RunConfig is made."""

from __future__ import annotations

import pytest

from peftqa.errors import PeftqaError
from tests.helpers import tiny_run_config


def test_dropout_outside_its_range_is_refused():
    with pytest.raises(PeftqaError, match="dropout must be in"):
        tiny_run_config("m", "d", "o", dropout=1.5)


def test_a_head_rate_that_cannot_work_is_one_line_from_the_cli(capsys):
    from peftqa.cli.commands import main

    assert main(["train", "--head-lr", "-1", "--model", "/no/such/model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["peftqa: error: head_lr must be positive, got -1.0"]
