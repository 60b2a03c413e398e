"""Train -> save -> reload -> predict on tiny random encoders with the real vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pytest

import peftqa.train as train_module
from peftqa import files, runs
from peftqa.data import load_squad
from peftqa.errors import PeftqaError
from peftqa.evaluation import evaluate_run
from peftqa.features import build_features
from peftqa.predict import answer_question, evaluate
from peftqa.train import length_grouped_batches, train
from tests.conftest import tiny_run_config
from tests.squad_fixtures import many_articles, write_squad


@pytest.mark.parametrize("method", ["lora", "ia3", "full"])
def test_trained_run_reloads_and_predicts_identically(tiny_model_dir, squad_dir, tmp_path, method):
    run_dir = tmp_path / "run"
    metrics = train(tiny_run_config(tiny_model_dir, squad_dir, run_dir, method), log=lambda line: None)

    for name in (runs.RUN_JSON, runs.METRICS_JSON, runs.PREDICTIONS_JSON, runs.LOSS_CURVE):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "checkpoint").exists()
    saved = json.loads((run_dir / runs.METRICS_JSON).read_text())
    assert saved["f1"] == metrics["f1"]
    assert len(saved["history"]) == 2
    assert 0 < saved["trainable_params"] <= saved["total_params"]
    if method != "full":
        assert saved["trainable_percent"] < 50
    settings = json.loads((run_dir / runs.RUN_JSON).read_text())
    assert settings["config"]["method"] == method and "torch" in settings["versions"]
    assert set(settings["data_md5"]) == {"train", "dev"}

    # Reload from disk: the same predictions and the same scores as at the end of training.
    loaded = runs.load_run(run_dir)
    examples = load_squad(squad_dir / "dev-v1.1.json")
    features = build_features(examples, loaded.tokenizer, 128, 32)
    result = evaluate(loaded.model, examples, features, loaded.tokenizer.pad_token_id)
    assert result.predictions == json.loads((run_dir / runs.PREDICTIONS_JSON).read_text())
    assert evaluate_run(run_dir)["f1"] == pytest.approx(saved["f1"])
    ranked = answer_question(loaded.model, loaded.tokenizer, "Who wrote it?", examples[0].context, top_k=3)
    assert 1 <= len(ranked) <= 3 and all(c.text in examples[0].context for c in ranked)


def test_training_is_reproducible_with_a_seed(tiny_bert_dir, squad_dir, tmp_path):
    first = train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "a", epochs=1), log=lambda line: None)
    second = train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "b", epochs=1), log=lambda line: None)
    assert first["history"] == second["history"]


class _Killed(BaseException):
    """Stands for kill -9: raised right after a checkpoint is on disk, nothing else runs."""


def test_resume_after_interruption_reaches_the_same_result(tiny_distilbert_dir, squad_dir, tmp_path, monkeypatch):
    # Dropout on, so the resumed run must also restore the random-number state to match.
    config = dict(method="lora", epochs=3, dropout=0.1, method_options={"lora_dropout": 0.1})
    reference = train(
        tiny_run_config(tiny_distilbert_dir, squad_dir, tmp_path / "ref", **config), log=lambda line: None
    )

    real_save = train_module.save_checkpoint
    saves = {"count": 0}

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves["count"] += 1
        if saves["count"] == 3:  # mid-way through the second epoch
            raise _Killed

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    interrupted = tiny_run_config(tiny_distilbert_dir, squad_dir, tmp_path / "run", **config)
    with pytest.raises(_Killed):
        train(interrupted, log=lambda line: None)
    assert not (tmp_path / "run" / runs.METRICS_JSON).exists()
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)

    with pytest.raises(PeftqaError, match="--resume"):
        train(interrupted, log=lambda line: None)
    resumed = train(interrupted, resume=True, log=lambda line: None)
    assert resumed["history"] == reference["history"]
    assert resumed["f1"] == reference["f1"]
    # A finished run is not trained again.
    assert train(interrupted, resume=True, log=lambda line: None)["f1"] == reference["f1"]


def test_length_grouped_batches_cover_every_row_once_and_group_lengths():
    lengths = np.random.default_rng(0).integers(20, 384, size=1000)
    batches = length_grouped_batches(lengths, 16, seed=3)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 40  # random batches would spread over ~300 tokens
    assert all((a == b).all() for a, b in zip(batches, length_grouped_batches(lengths, 16, seed=3), strict=True))


def test_resume_refuses_a_run_started_with_other_settings(tiny_bert_dir, squad_dir, tmp_path):
    train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "run", epochs=1), log=lambda line: None)
    with pytest.raises(PeftqaError, match=r"other settings \(lr: 0.01 -> 0.02\)"):
        train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "run", epochs=1, lr=2e-2), resume=True)


def test_on_epoch_gets_every_epoch_and_can_stop_the_run(tiny_bert_dir, squad_dir, tmp_path):
    seen = []
    metrics = train(
        tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "a"), log=lambda line: None, on_epoch=seen.append
    )
    assert seen == metrics["history"] and [entry["epoch"] for entry in seen] == [1, 2]

    class Stop(Exception):
        pass

    def stop_after_first(entry):
        raise Stop(entry["epoch"])

    with pytest.raises(Stop):
        train(
            tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "b"), log=lambda line: None, on_epoch=stop_after_first
        )
    assert not (tmp_path / "b" / runs.METRICS_JSON).exists()


def test_every_method_is_scored_on_one_seeded_dev_sample_and_its_scores_are_saved(tiny_bert_dir, tmp_path):
    squad = write_squad(tmp_path / "squad", dev=many_articles())
    results = {}
    for method in ("lora", "ia3"):
        run_dir = tmp_path / method
        config = tiny_run_config(tiny_bert_dir, squad, run_dir, method, epochs=1, eval_limit=8, seed=7)
        metrics = train(config, log=lambda line: None)
        rows = [json.loads(line) for line in (run_dir / runs.SCORES_JSONL).read_text().splitlines()]
        results[method] = (files.read_json(run_dir / runs.RUN_JSON), metrics, rows)
        # The saved per-question scores are the figures' raw material: their mean is the reported F1.
        assert len(rows) == 8 == metrics["dev_questions"]
        assert np.mean([row["f1"] for row in rows]) == pytest.approx(metrics["f1"])
        low, high = metrics["f1_ci"]
        assert low - 1e-9 <= metrics["f1"] <= high + 1e-9
        # Re-scoring from disk draws the same sample and reproduces the figure and its interval.
        again = evaluate_run(run_dir)
        assert again["f1"] == pytest.approx(metrics["f1"]) and again["f1_ci"] == pytest.approx(metrics["f1_ci"])
    (lora_settings, _, lora_rows), (ia3_settings, _, ia3_rows) = results["lora"], results["ia3"]
    assert [r["id"] for r in lora_rows] == [r["id"] for r in ia3_rows]  # paired: the same questions
    assert lora_settings["eval_ids_sha256"] == ia3_settings["eval_ids_sha256"]
    assert len({r["title"] for r in lora_rows}) >= 4  # a sample over the articles, not the first few
    assert "seeded random sample" in lora_settings["eval_questions"]
    # Another seed of the run does not change the questions (eval_seed is its own setting).
    other = tiny_run_config(tiny_bert_dir, squad, tmp_path / "other", "lora", epochs=1, eval_limit=8, seed=8)
    train(other, log=lambda line: None)
    assert files.read_json(tmp_path / "other" / runs.RUN_JSON)["eval_ids_sha256"] == lora_settings["eval_ids_sha256"]
