"""Train -> save -> reload -> predict on tiny random encoders with the real vocabulary."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from peftqa import files
from peftqa.data import load_squad
from peftqa.errors import PeftqaError
from peftqa.features.batches import length_grouped_batches
from peftqa.features.windows import build_features
from peftqa.inference import run_folder
from peftqa.inference.evaluate import ask, evaluate
from peftqa.inference.rescore import evaluate_run
from peftqa.methods import get_method
from peftqa.methods.registry import METHODS, register
from peftqa.training.loop import TrainHooks, train
from tests.helpers import Killed, tiny_run_config
from tests.squad_fixtures import many_articles, write_squad


@pytest.mark.parametrize("method", ["lora", "ia3", "full"])
def test_trained_run_reloads_and_predicts_identically(tiny_model_dir, squad_dir, tmp_path, method):
    run_dir = tmp_path / "run"
    metrics = train(tiny_run_config(tiny_model_dir, squad_dir, run_dir, method), log=lambda line: None)

    for name in (run_folder.RUN_JSON, run_folder.METRICS_JSON, run_folder.PREDICTIONS_JSON, run_folder.LOSS_CURVE):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "checkpoint").exists()
    saved = json.loads((run_dir / run_folder.METRICS_JSON).read_text())
    assert saved["f1"] == metrics["f1"]
    assert len(saved["history"]) == 2
    assert 0 < saved["trainable_params"] <= saved["total_params"]
    if method != "full":
        assert saved["trainable_percent"] < 50
    settings = json.loads((run_dir / run_folder.RUN_JSON).read_text())
    assert settings["config"]["method"] == method and "torch" in settings["versions"]
    assert set(settings["data_md5"]) == {"train", "dev"}

    # Reload from disk: the same predictions and the same scores as at the end of training.
    loaded = run_folder.load_run(run_dir)
    examples = load_squad(squad_dir / "dev-v1.1.json")
    features = build_features(examples, loaded.tokenizer, 128, 32)
    result = evaluate(loaded.model, examples, features, loaded.tokenizer.pad_token_id)
    assert result.predictions == json.loads((run_dir / run_folder.PREDICTIONS_JSON).read_text())
    assert evaluate_run(run_dir)["f1"] == pytest.approx(saved["f1"])
    ranked = ask(loaded.model, loaded.tokenizer, "Who wrote it?", examples[0].context, top_k=3).candidates
    assert 1 <= len(ranked) <= 3 and all(c.text in examples[0].context for c in ranked)


def test_training_is_reproducible_with_a_seed(tiny_bert_dir, squad_dir, tmp_path):
    first = train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "a", epochs=1), log=lambda line: None)
    # Without its loss curve (a benchmark's choice) the run is the same, less the picture.
    second = train(
        tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "b", epochs=1), log=lambda line: None, loss_curve=False
    )
    assert first["history"] == second["history"]
    assert (tmp_path / "a" / run_folder.LOSS_CURVE).is_file() and not (tmp_path / "b" / run_folder.LOSS_CURVE).exists()


def test_resume_after_interruption_reaches_the_same_result(tiny_distilbert_dir, squad_dir, tmp_path):
    # Dropout on, so the resumed run must also restore the random-number state to match.
    config = dict(method="lora", epochs=3, dropout=0.1, method_options={"lora_dropout": 0.1})
    reference = train(
        tiny_run_config(tiny_distilbert_dir, squad_dir, tmp_path / "ref", **config), log=lambda line: None
    )

    def die_in_step_5(state):
        # 3 steps an epoch, a checkpoint every 2 steps and at each epoch end: the last one on disk is
        # step 4's, in the middle of the second epoch (after its first epoch was scored).
        if state.progress.step == 5:
            raise Killed

    interrupted = tiny_run_config(tiny_distilbert_dir, squad_dir, tmp_path / "run", **config)
    with pytest.raises(Killed):
        train(interrupted, log=lambda line: None, hooks=TrainHooks(after_step=die_in_step_5))
    assert not (tmp_path / "run" / run_folder.METRICS_JSON).exists()

    with pytest.raises(PeftqaError, match="--resume"):
        train(interrupted, log=lambda line: None)
    lines: list[str] = []
    resumed = train(interrupted, resume=True, log=lines.append)
    assert "resumed from step 4 of 9" in lines
    assert resumed["history"] == reference["history"]
    assert resumed["f1"] == reference["f1"]
    # A finished run is not trained again.
    assert train(interrupted, resume=True, log=lambda line: None)["f1"] == reference["f1"]


def test_resume_refuses_a_run_started_with_other_settings(tiny_bert_dir, squad_dir, tmp_path):
    train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "run", epochs=1), log=lambda line: None)
    with pytest.raises(PeftqaError, match=r"other settings \(lr: 0.01 -> 0.02\)"):
        train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "run", epochs=1, lr=2e-2), resume=True)


def test_hooks_see_the_data_every_step_and_every_epoch_and_can_stop_the_run(tiny_bert_dir, squad_dir, tmp_path):
    prepared, steps, epochs = [], [], []
    hooks = TrainHooks(
        after_prepare=prepared.append,
        after_step=lambda state: steps.append((state.progress.step, len(state.progress.history))),
        after_epoch=epochs.append,
    )
    metrics = train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "a"), log=lambda line: None, hooks=hooks)
    assert len(prepared) == 1 and len(prepared[0].train_features) == 6  # batch 2: 3 steps an epoch
    assert steps == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1)] and metrics["steps"] == 6
    assert epochs == metrics["history"] and [entry["epoch"] for entry in epochs] == [1, 2]

    class Stop(Exception):
        pass

    def stop_after_first(entry):
        raise Stop(entry["epoch"])

    with pytest.raises(Stop):
        train(
            tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "b"),
            log=lambda line: None,
            hooks=TrainHooks(after_epoch=stop_after_first),
        )
    assert not (tmp_path / "b" / run_folder.METRICS_JSON).exists()


def test_every_method_is_scored_on_one_seeded_dev_sample_and_its_scores_are_saved(tiny_bert_dir, tmp_path):
    squad = write_squad(tmp_path / "squad", dev=many_articles())
    results = {}
    for method in ("lora", "ia3"):
        run_dir = tmp_path / method
        config = tiny_run_config(tiny_bert_dir, squad, run_dir, method, epochs=1, eval_limit=8, seed=7)
        metrics = train(config, log=lambda line: None)
        rows = [json.loads(line) for line in (run_dir / run_folder.SCORES_JSONL).read_text().splitlines()]
        results[method] = (files.read_json(run_dir / run_folder.RUN_JSON), metrics, rows)
        # The saved per-question scores are the figures' raw material: their mean is the reported F1.
        assert len(rows) == 8 == metrics["eval_questions"] == results[method][0]["eval_questions"]
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
    assert "seeded random sample" in lora_settings["eval_description"]
    # Another seed of the run does not change the questions (eval_seed is its own setting).
    other = tiny_run_config(tiny_bert_dir, squad, tmp_path / "other", "lora", epochs=1, eval_limit=8, seed=8)
    train(other, log=lambda line: None)
    assert (
        files.read_json(tmp_path / "other" / run_folder.RUN_JSON)["eval_ids_sha256"] == lora_settings["eval_ids_sha256"]
    )


def test_a_methods_after_optimizer_step_runs_once_per_step_before_the_gradients_are_cleared(
    tiny_bert_dir, squad_dir, tmp_path
):
    calls = []

    def record(model, step, total_steps):
        has_gradients = any(p.grad is not None for p in model.parameters() if p.requires_grad)
        calls.append((step, total_steps, has_gradients))

    register(dataclasses.replace(get_method("lora"), name="lora_counted", after_optimizer_step=record))
    try:
        config = tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "run", "lora_counted")
        metrics = train(config, log=lambda line: None)
    finally:
        del METHODS["lora_counted"]
    assert calls == [(step, 6, True) for step in range(6)] and metrics["steps"] == 6


# Tensor methods that move a value to the host (each waits for the device on a GPU).
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__")


def _host_reads_between_steps(monkeypatch, config) -> tuple[int, dict, list]:
    """Train `config`, counting host reads from one step's end to the next step's end inside an epoch:
    the step loop's own reads. An epoch's evaluation and checkpoint come after its last step and
    before the next epoch's first, so they are not counted. Also returns the run's training data."""
    state = {"reads": 0, "counted": 0, "in_epoch": False}

    def counting(original):
        def wrapper(self, *args, **kwargs):
            state["reads"] += 1
            return original(self, *args, **kwargs)

        return wrapper

    def after_step(_training_state):
        if state["in_epoch"]:
            state["counted"] += state["reads"]
        state["reads"], state["in_epoch"] = 0, True

    def after_epoch(_entry):
        state["in_epoch"] = False

    prepared: list = []
    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    hooks = TrainHooks(after_prepare=prepared.append, after_step=after_step, after_epoch=after_epoch)
    metrics = train(config, log=lambda line: None, hooks=hooks)
    monkeypatch.undo()
    return state["counted"], metrics, prepared


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_step_loop_reads_the_device_only_every_log_every_steps(
    tiny_bert_dir, squad_dir, tmp_path, monkeypatch, method
):
    # Batch 2 over the fixture's 6 features, 4 epochs: 12 steps, 3 an epoch; reads at steps 4 and 8.
    steps, log_every, epochs = 12, 4, 4
    settings = dict(batch_size=2, epochs=epochs, log_every_steps=log_every, checkpoint_every_steps=1000)
    config = tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "sparse", method, **settings)
    reads, metrics, prepared = _host_reads_between_steps(monkeypatch, config)
    assert metrics["steps"] == steps
    assert 0 < reads <= steps // log_every
    # Both kinds of batch went through the forward: with padding and without.
    lengths = prepared[0].train_features.lengths
    batches = [
        b
        for epoch in range(epochs)
        for b in length_grouped_batches(lengths, 2, config.optimisation.seed * 1000 + epoch)
    ]
    assert {bool(lengths[b].min() < lengths[b].max()) for b in batches} == {True, False}
    # Every step's real tokens are still counted (read from the device with the losses).
    tokens = metrics["train_tokens_per_second"] * metrics["train_seconds"]
    assert tokens == pytest.approx(epochs * int(lengths.sum()))
    # The count is live: reading every step is seen as a read at every step but an epoch's last.
    every = tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "every", method, **{**settings, "log_every_steps": 1})
    reads_every, _, _ = _host_reads_between_steps(monkeypatch, every)
    assert reads_every >= steps - epochs


def test_step_losses_are_the_same_whatever_log_every_steps(tiny_bert_dir, squad_dir, tmp_path):
    histories = []
    for log_every in (1, 5):
        config = tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / str(log_every), log_every_steps=log_every)
        histories.append(train(config, log=lambda line: None)["history"])
    assert histories[0] == histories[1]


@pytest.fixture(scope="module")
def v2_files(tmp_path_factory):
    """SQuAD 2.0-format train (12 articles, a third of the questions without an answer, made by make-v2)
    and the hand-made 2.0 dev fixture."""
    from peftqa.data import make_squad2
    from tests.squad_fixtures import write_v2

    folder = tmp_path_factory.mktemp("v2")
    v1 = write_squad(folder / "v1", train=many_articles(12)) / "train-v1.1.json"
    make_squad2(v1, folder / "train-v2.json")
    return folder / "train-v2.json", write_v2(folder / "dev-v2.json")


def test_a_squad2_run_chooses_its_threshold_on_held_out_training_questions_and_keeps_it(
    tiny_bert_without_dropout, tmp_path, v2_files
):
    train_file, dev_file = v2_files
    prepared = []
    config = tiny_run_config(
        tiny_bert_without_dropout, None, tmp_path / "run", train_file=str(train_file), dev_file=str(dev_file),
        data_dir=None, validation_questions=7, max_steps=4,
    )  # fmt: skip
    metrics = train(config, log=lambda line: None, hooks=TrainHooks(after_prepare=prepared.append))
    data = prepared[0]
    tune_ids = {e.id for e in data.null_rule.tune_examples}
    train_ids = {e.id for e in load_squad(train_file)}
    dev_ids = {e.id for e in load_squad(dev_file)}
    # Chosen on training questions held out from training, never on dev.
    assert len(tune_ids) >= 7 and tune_ids <= train_ids and not tune_ids & dev_ids
    assert not tune_ids & {e.id for e in data.train_examples}
    assert {e.id for e in data.eval_examples} == dev_ids
    assert metrics["null_threshold"] is not None and metrics["NoAns_total"] == 4 and metrics["HasAns_total"] == 6
    settings = json.loads((tmp_path / "run" / run_folder.RUN_JSON).read_text())
    assert settings["null_threshold_chosen_on"].startswith(f"{len(tune_ids)} held-out training questions")
    assert settings["data_files"]["train"]["fingerprint"].startswith("sha256:")
    assert settings["data_files"]["dev"]["unanswerable"] == 4
    # Reloaded from the run: evaluate answers with the stored threshold and gives the same numbers.
    again = evaluate_run(tmp_path / "run")
    for key in ("exact_match", "f1", "null_threshold", "HasAns_f1", "NoAns_exact", "best_f1"):
        assert again[key] == metrics[key], key
    predictions = json.loads((tmp_path / "run" / run_folder.PREDICTIONS_JSON).read_text())
    assert set(predictions) == dev_ids


def test_unanswerable_training_windows_point_at_cls(tiny_bert_dir, v2_files):
    from peftqa.model.backbone import load_tokenizer

    examples = load_squad(v2_files[0])
    features = build_features(examples, load_tokenizer(tiny_bert_dir), 128, 32)
    unanswerable = np.array([not examples[i].answers for i in features.example_index])
    assert unanswerable.any() and (~unanswerable).any()
    assert (features.start_positions[unanswerable] == 0).all() and (features.end_positions[unanswerable] == 0).all()
    assert (features.start_positions[~unanswerable] > 0).all()  # every answer fits its one short window


def test_a_given_null_threshold_needs_no_held_out_articles_and_is_refused_on_v1_data(
    tiny_bert_dir, squad_dir, tmp_path, v2_files
):
    train_file, dev_file = v2_files
    prepared = []
    metrics = train(
        tiny_run_config(
            tiny_bert_dir,
            None,
            tmp_path / "given",
            train_file=str(train_file),
            dev_file=str(dev_file),
            null_threshold=-1e9,
            max_steps=1,
            epochs=1,
        ),  # fmt: skip
        log=lambda line: None,
        hooks=TrainHooks(after_prepare=prepared.append),
    )
    assert prepared[0].null_rule.tune_examples is None and len(prepared[0].train_examples) == 30
    assert metrics["null_threshold"] == -1e9 and metrics["NoAns_exact"] == 100.0 and metrics["HasAns_f1"] == 0.0
    with pytest.raises(PeftqaError, match="--null-threshold applies to data with unanswerable questions"):
        train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "v1", null_threshold=0.0), log=lambda line: None)
    assert not (tmp_path / "v1").exists()


def test_a_v1_file_given_by_name_trains_exactly_like_the_data_directory(tiny_bert_without_dropout, squad_dir, tmp_path):
    folder = tiny_run_config(tiny_bert_without_dropout, squad_dir, tmp_path / "dir", max_steps=3)
    named = folder.replace(
        data_dir=None,
        train_file=str(squad_dir / "train-v1.1.json"),
        dev_file=str(squad_dir / "dev-v1.1.json"),
        output_dir=str(tmp_path / "named"),
    )
    first, second = train(folder, log=lambda line: None), train(named, log=lambda line: None)
    for key in ("exact_match", "f1", "exact_match_ci", "f1_ci", "eval_loss", "history"):
        assert first[key] == second[key], key
    assert "null_threshold" not in first
    read = lambda name: (tmp_path / name / run_folder.PREDICTIONS_JSON).read_text()  # noqa: E731
    assert read("dir") == read("named")


def test_resume_refuses_data_that_changed_under_the_same_name(tiny_bert_dir, tmp_path):
    import os

    squad = write_squad(tmp_path / "squad")
    config = tiny_run_config(
        tiny_bert_dir, None, tmp_path / "run", train_file=str(squad / "train-v1.1.json"),
        dev_file=str(squad / "dev-v1.1.json"), epochs=1,
    )  # fmt: skip
    train(config, log=lambda line: None)
    (tmp_path / "run" / run_folder.METRICS_JSON).unlink()  # as if interrupted before the end
    dev = squad / "dev-v1.1.json"
    dev.write_text(dev.read_text().replace("Who wrote", "Who penned"))
    os.utime(dev, ns=(1, 1))
    with pytest.raises(PeftqaError, match=r"trained on other data: dev \(.*dev-v1\.1\.json\) changed"):
        train(config, resume=True, log=lambda line: None)


def test_a_diverged_run_writes_null_not_nan_and_says_so(tiny_bert_dir, squad_dir, tmp_path):
    lines: list[str] = []
    config = tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "run", "full", lr=1e12, max_steps=3)
    train(config, log=lines.append)

    def refuse(constant: str):
        raise AssertionError(f"{constant} written to a JSON file")

    for name in (run_folder.RUN_JSON, run_folder.METRICS_JSON, run_folder.PREDICTIONS_JSON):
        json.loads((tmp_path / "run" / name).read_text(), parse_constant=refuse)
    metrics = json.loads((tmp_path / "run" / run_folder.METRICS_JSON).read_text())
    assert None in metrics["step_losses"] and metrics["history"][-1]["train_loss"] is None
    assert any("the run diverged" in line for line in lines)
    assert run_folder.load_run(tmp_path / "run").metrics["f1"] == metrics["f1"]  # and the run still loads
