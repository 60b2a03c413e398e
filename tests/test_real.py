"""Heavier checks on real SQuAD and the real pretrained MiniLM (run with `make test-slow`).

They need the official files (PEFTQA_SQUAD_DIR, set by the Makefile to ../shared/squad when it
exists) and PyPI access the first time (the minilm-l6 wheel is then cached).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from peftqa.data import OFFICIAL_MD5, find_split_file, fingerprint, load_squad, md5_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_squad_dir() -> Path:
    folder = os.environ.get("PEFTQA_SQUAD_DIR")
    if not folder or find_split_file(Path(folder), "dev") is None:
        pytest.skip("PEFTQA_SQUAD_DIR does not point at the official SQuAD files")
    return Path(folder)


def test_official_files_match_their_md5_and_counts(real_squad_dir):
    for split, questions in (("train", 87_599), ("dev", 10_570)):
        path = find_split_file(real_squad_dir, split)
        assert md5_of(path) == OFFICIAL_MD5[split] == fingerprint(path)  # known by its MD5, as it always was
        assert len(load_squad(path)) == questions


def test_minilm_alias_weights_are_the_published_ones():
    from peftqa.model.backbone import resolve_model

    digest = hashlib.sha256()
    with (Path(resolve_model("minilm-l6")) / "model.safetensors").open("rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_minilm_alias_is_the_pretrained_model_and_learns(real_squad_dir, tmp_path):
    from peftqa.settings.run_config import RunConfig
    from peftqa.training.loop import train

    # lr 3e-3: the quick study's best LoRA rate for 300 questions.
    config = RunConfig.flat(
        method="lora", model="minilm-l6", data_dir=str(real_squad_dir), train_limit=300, eval_limit=100,
        epochs=1, max_length=256, doc_stride=96, batch_size=16, lr=3e-3, output_dir=str(tmp_path / "run"),
    )  # fmt: skip
    metrics = train(config, log=lambda line: None)
    # A random encoder scores F1 of a few points; the pretrained one learns from 300 questions.
    assert metrics["f1"] > 15
