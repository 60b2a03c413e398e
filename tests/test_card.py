"""export/card: the model card says what the run recorded (its data files, questions, steps and package
versions), never what a run usually is."""

from __future__ import annotations

import math

from peftqa import files
from peftqa.data import OFFICIAL_MD5
from peftqa.export import export_run
from peftqa.export.card import model_card
from peftqa.inference import run_folder
from peftqa.training.loop import train
from tests.helpers import tiny_run_config
from tests.squad_fixtures import jsonl_rows, write_jsonl

INFO = {
    "format": "hf",
    "source_run": "lora-run",
    "quantize": None,
    "scoring": {"max_length": 384, "doc_stride": 128, "n_best": 20, "max_answer_tokens": 30},
    "config": {
        "method": "lora",
        "model": "minilm-l6",
        "epochs": 1.0,
        "batch_size": 16,
        "seed": 42,
        "train_limit": 2000,
    },
    "metrics": {"exact_match": 50.0, "f1": 60.0, "steps": 125},
    "versions": {"peftqa": "0.1.0", "transformers": "9.9.9"},
}


def test_a_run_on_the_official_files_says_squad_with_its_tag_and_attribution():
    settings = {
        "data_files": {
            "train": {"source": "/data/train-v1.1.json", "format": "squad", "fingerprint": OFFICIAL_MD5["train"]},
            "dev": {"source": "/data/dev-v1.1.json", "format": "squad", "fingerprint": OFFICIAL_MD5["dev"]},
        },
        "train_questions": 2000,
        "train_features": 2000,
        "eval_description": "500 dev questions (seeded random sample, seed 0)",
        "learning_rate": 3e-4,
        "head_learning_rate": 0.01,
        "versions": {"transformers": "5.0.0"},
    }
    settings["data_files"]["train"]["questions"] = 87599
    card = model_card(INFO, settings)
    assert "- rajpurkar/squad" in card and "on SQuAD v1.1" in card and "Rajpurkar et al., 2016" in card
    assert "SQuAD v1.1 train: 2,000 of its 87,599 questions (a seeded random sample, seed 42)" in card
    assert "125 optimiser steps (1 epoch(s) of 2,000 training windows)" in card
    assert "SQuAD v1.1 dev: 500 dev questions (seeded random sample, seed 0)" in card
    assert "lr 0.0003, QA head lr 0.01, batch" in card  # the fresh head trained at its own rate
    same = model_card(INFO, {**settings, "head_learning_rate": 3e-4})
    assert "lr 0.0003, batch" in same  # one rate (full fine-tuning): said once
    assert "Trained with transformers 5.0.0" in card and "Versions at export: peftqa 0.1.0, transformers 9.9.9" in card
    assert "transformers 9.9.9, used for this export" in card  # the export's own, never a version written in by hand


def test_a_run_on_the_users_own_file_says_so_and_claims_nothing_of_squad(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTQA_CACHE_DIR", str(tmp_path / "cache"))
    questions = write_jsonl(tmp_path / "mine.jsonl", jsonl_rows())
    config = tiny_run_config(
        tiny_bert_dir, None, tmp_path / "run", train_file=str(questions), dev_file=str(questions), train_limit=4,
        max_steps=3,
    )  # fmt: skip
    train(config, log=lambda line: None)
    export_run(tmp_path / "run", tmp_path / "export", log=lambda line: None)
    card = (tmp_path / "export" / run_folder.MODEL_CARD).read_text()
    assert "SQuAD v1.1" not in card and "rajpurkar" not in card and "87,599" not in card
    assert "`mine.jsonl` (JSON Lines): 4 of its 6 questions (a seeded random sample, seed 42)" in card
    windows = files.read_json(tmp_path / "run" / run_folder.RUN_JSON)["train_features"]
    epochs = 3 / math.ceil(windows / 2)  # batches of 2 windows
    assert f"3 optimiser steps ({epochs:.3g} epoch(s) of {windows} training windows)" in card
    assert "`mine.jsonl` (JSON Lines): 6 dev questions of mine.jsonl (all)" in card
    from importlib.metadata import version

    assert f"transformers {version('transformers')}, used for this export" in card and "5.24" not in card
    assert str(tmp_path) not in card  # no path of this machine
