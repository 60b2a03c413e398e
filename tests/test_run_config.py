"""settings.run_config: values that cannot work are refused when the RunConfig is made."""

from __future__ import annotations

import pytest

from peftqa.errors import PeftqaError
from peftqa.settings.run_config import (
    RunConfig,
    recorded_config,
    setting_fields,
    settings_that_may_change_on_resume,
)
from tests.helpers import tiny_run_config


def test_dropout_outside_its_range_is_refused():
    with pytest.raises(PeftqaError, match=r"--dropout: must be a finite number in \[0, 1\)"):
        tiny_run_config("m", "d", "o", dropout=1.5)


# run.json's "config" as peftqa wrote it before the settings were grouped: one flat dict.
_FLAT_RUN_JSON_CONFIG = {
    "method": "lora", "model": "distilbert-base-uncased", "method_options": {"lora_r": 8}, "data_dir": "/data",
    "train_file": None, "dev_file": None, "null_threshold": None, "train_limit": 2000, "eval_limit": 500,
    "eval_split": "dev", "eval_sample": "random", "eval_seed": 0, "validation_questions": 2000, "max_length": 256,
    "doc_stride": 96, "epochs": 1.0, "max_steps": None, "lr": 0.001, "batch_size": 16, "eval_batch_size": None,
    "warmup_fraction": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0, "dropout": 0.0, "seed": 42,
    "checkpoint_every_steps": 50, "log_every_steps": 50, "device_batches": "on", "precision": "auto",
    "frozen_bf16": "off", "fused_lora": "auto", "eval_every_steps": None, "early_stopping_patience": None,
    "report_to": "none", "tracking_dir": None, "tracking_parent": None, "n_best": 20, "max_answer_tokens": 30,
    "output_dir": "runs/lora",
}  # fmt: skip
# Settings added since that file was written: it loads with their defaults (how it was trained).
_ADDED_SINCE = {"eval_growth": 1.0, "validation_limit": None, "head_lr": None}


def test_a_flat_run_json_config_loads_into_the_groups_and_is_written_back_the_same():
    config = RunConfig.from_dict(_FLAT_RUN_JSON_CONFIG)
    assert (config.optimisation.lr, config.scoring.max_length, config.data.train_limit) == (1e-3, 256, 2000)
    assert (config.speed.log_every_steps, config.tracking.checkpoint_every_steps) == (50, 50)
    assert (config.tracking.eval_growth, config.data.validation_limit) == (1.0, None)
    assert config.method_options == {"lora_r": 8}
    assert config.to_dict() == {**_FLAT_RUN_JSON_CONFIG, **_ADDED_SINCE}
    with pytest.raises(PeftqaError, match="unknown settings: learning_rate"):
        RunConfig.from_dict({**_FLAT_RUN_JSON_CONFIG, "learning_rate": 1e-3})
    # Its QA head trained at the method's rate, which run.json recorded beside the config.
    loaded = RunConfig.from_dict(recorded_config({"config": _FLAT_RUN_JSON_CONFIG, "learning_rate": 1e-3}))
    assert (loaded.optimisation.head_lr, loaded.head_learning_rate) == (1e-3, 1e-3)


def test_each_setting_is_in_one_place_and_replace_changes_it_there():
    names = [f.name for _, f in setting_fields()]
    assert len(names) == len(set(names)) == len(_FLAT_RUN_JSON_CONFIG) + len(_ADDED_SINCE)
    config = RunConfig.flat(method="ia3", lr=1e-3)
    changed = config.replace(epochs=2.0, report_to="tensorboard")
    assert (changed.optimisation.epochs, changed.tracking.report_to, changed.optimisation.lr) == (
        2.0,
        "tensorboard",
        1e-3,
    )
    assert (config.optimisation.epochs, config.method) == (3.0, "ia3")


def test_resume_may_change_only_the_settings_marked_so(tmp_path):
    from peftqa.files import write_json_atomic
    from peftqa.training.checkpoint import check_same_settings

    config = RunConfig.from_dict(_FLAT_RUN_JSON_CONFIG)
    write_json_atomic(tmp_path / "run.json", {"config": config.to_dict()})
    marked = settings_that_may_change_on_resume()
    assert {"log_every_steps", "report_to", "data_dir"} <= marked and not {"lr", "precision", "seed"} & marked
    check_same_settings(tmp_path, config.replace(log_every_steps=1, report_to="tensorboard", data_dir="/moved"))
    with pytest.raises(PeftqaError, match=r"other settings \(precision: 'auto' -> 'fp32'\)"):
        check_same_settings(tmp_path, config.replace(precision="fp32", log_every_steps=1))


def test_a_head_rate_that_cannot_work_is_one_line_from_the_cli(capsys):
    from peftqa.cli.commands import main

    assert main(["train", "--head-lr", "-1", "--model", "/no/such/model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["peftqa: error: --head-lr: must be a finite number > 0, got -1.0"]
