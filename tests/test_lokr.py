"""methods/lokr: the decompose factor takes peft's -1 (no limit) and refuses what peft would misread."""

from __future__ import annotations

import pytest

from peftqa.errors import PeftqaError
from peftqa.methods import get_method
from peftqa.model.backbone import load_qa_model


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_minus_one_is_pefts_unlimited_factor(tiny_bert_dir):
    spec = get_method("lokr")
    unlimited = spec.apply(load_qa_model(str(tiny_bert_dir)), spec.make_options({"lokr_decompose_factor": -1}))
    four = spec.apply(load_qa_model(str(tiny_bert_dir)), spec.make_options({"lokr_decompose_factor": 4}))
    assert 0 < _trainable(unlimited) != _trainable(four)


@pytest.mark.parametrize("factor", [0, -2])
def test_other_factors_below_one_are_refused_in_one_line(factor):
    with pytest.raises(PeftqaError, match=f"lokr-decompose-factor: must be -1 or a whole number >= 1, got {factor}$"):
        get_method("lokr").make_options({"lokr_decompose_factor": factor})
