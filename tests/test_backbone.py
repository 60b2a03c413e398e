"""Loading the encoder: the dropout setting reaches every dropout module, or fails clearly."""

from __future__ import annotations

import pytest
import torch

from peftqa.errors import PeftqaError


def _dropouts(model) -> set[float]:
    return {module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)}


def test_dropout_setting_reaches_every_dropout_of_both_architectures(tiny_model_dir):
    from peftqa.model.backbone import load_qa_model

    assert _dropouts(load_qa_model(str(tiny_model_dir))) == {0.1}  # the checkpoint's own
    assert _dropouts(load_qa_model(str(tiny_model_dir), dropout=0.0)) == {0.0}
    assert _dropouts(load_qa_model(str(tiny_model_dir), dropout=0.25)) == {0.25}


def test_dropout_on_an_unknown_config_is_a_clear_error(tmp_path):
    from peftqa.model.backbone import load_qa_model

    # GPT-2 names its dropouts attn_pdrop, resid_pdrop and embd_pdrop: none that peftqa knows.
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "attn_pdrop": 0.1}')
    with pytest.raises(PeftqaError, match="cannot set the dropout of a 'gpt2' model"):
        load_qa_model(str(tmp_path), dropout=0.0)
