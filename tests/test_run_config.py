"""settings.run_config: values that cannot work are refused when the RunConfig is made."""

from __future__ import annotations

import pytest

from peftqa.errors import PeftqaError
from tests.helpers import tiny_run_config


def test_dropout_outside_its_range_is_refused():
    with pytest.raises(PeftqaError, match="dropout must be in"):
        tiny_run_config("m", "d", "o", dropout=1.5)
