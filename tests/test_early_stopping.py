"""Early stopping on held-out training articles: it stops where the held-out F1 peaked, keeps that step's
weights, scores no dev question before it stops, and a resumed run ends as an uninterrupted one."""

from __future__ import annotations

import pytest
import torch

from peftqa import files
from peftqa.cli.commands import main
from peftqa.inference import run_folder
from peftqa.inference.evaluate import evaluate
from peftqa.training.hooks import chain_hooks
from peftqa.training.loop import TrainHooks, train
from tests.helpers import Killed, tiny_run_config
from tests.squad_fixtures import many_articles, write_squad


def _quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def articles_dir(tmp_path_factory):
    """Train on 12 generated articles (4 questions held out as whole articles: the validation split; 26
    trained on, 13 steps an epoch), dev the fixture's own questions."""
    return write_squad(tmp_path_factory.mktemp("articles"), train=many_articles(12))


def _config(model_dir, squad_dir, out, **overrides):
    values = dict(epochs=2, eval_every_steps=2, early_stopping_patience=2)
    return tiny_run_config(model_dir, squad_dir, out, **{**values, **overrides})


class _Watch:
    """Hooks that see what every evaluation scored (`progress.last_eval`, at the next step or the run's
    end) and, once the first held-out evaluation is in, wreck the QA head and stop it learning: the
    held-out F1 can only fall from there."""

    def __init__(self) -> None:
        self.state = None
        self.prepared = None
        self.seen = 0  # held-out evaluations seen so far
        self.scored_ids: list[set[str]] = []  # ids of each held-out evaluation, in order
        self.predictions_at: dict[int, dict[str, str]] = {}  # step -> the held-out evaluation's answers
        self.finished_ids: set[str] = set()  # what the last evaluation, once the run is done, scored

    def hooks(self) -> TrainHooks:
        return TrainHooks(
            after_prepare=self._prepared, after_step=self._step, after_epoch=self._epoch, after_finish=self._finish
        )

    def _prepared(self, data) -> None:
        self.prepared = data

    def _seen(self, state) -> None:
        progress = state.progress
        if len(progress.validation) > self.seen:
            self.seen = len(progress.validation)
            self.scored_ids.append(set(progress.last_eval.predictions))
            self.predictions_at[progress.validation[-1]["step"]] = dict(progress.last_eval.predictions)
            if self.seen == 1:
                self._wreck(state)

    def _wreck(self, state) -> None:
        with torch.no_grad():
            for name, parameter in state.model.named_parameters():
                if parameter.requires_grad and "qa_outputs" in name:
                    parameter.zero_()
        state.scheduler.base_lrs = [0.0 for _ in state.scheduler.base_lrs]
        for group in state.optimizer.param_groups:
            group["lr"] = 0.0

    def _step(self, state) -> None:
        self.state = state
        self._seen(state)

    def _epoch(self, entry) -> None:
        self._seen(self.state)

    def _finish(self, metrics) -> None:
        self.finished_ids = set(self.state.progress.last_eval.predictions)


def test_a_run_whose_held_out_f1_peaks_early_stops_there_and_keeps_that_steps_weights(
    tiny_bert_dir, articles_dir, tmp_path
):
    run_dir = tmp_path / "run"
    watch = _Watch()
    metrics = train(_config(tiny_bert_dir, articles_dir, run_dir), log=_quiet, hooks=watch.hooks())

    scores = [entry["f1"] for entry in metrics["validation"]]
    assert scores[0] > max(scores[1:]), scores  # the peak the hook made: the first evaluation
    # 13 steps an epoch: evaluations at steps 2 and 4, then patience 2 runs out at step 6, in epoch 1.
    assert [e["step"] for e in metrics["validation"]] == [2, 4, 6]
    assert metrics["best_step"] == metrics["kept_step"] == 2 and metrics["stopped_at_step"] == 6
    assert metrics["steps"] == 6 and metrics["history"] == []  # stopped before the first epoch's end
    settings = files.read_json(run_dir / run_folder.RUN_JSON)
    assert settings["early_stopping"]["stopped_at_step"] == 6 and settings["early_stopping"]["best_step"] == 2
    assert "held-out training questions" in settings["validated_on"]

    # Scored while training: only held-out training articles, never a dev question; dev once, at the end.
    data = watch.prepared
    validation_ids = {e.id for e in data.validation_examples}
    dev_ids = {e.id for e in data.eval_examples}
    assert not validation_ids & dev_ids and not validation_ids & {e.id for e in data.train_examples}
    assert watch.scored_ids == [validation_ids] * 2  # steps 2 and 4, seen at steps 3 and 5
    assert watch.finished_ids == dev_ids == set(files.read_json(run_dir / run_folder.PREDICTIONS_JSON))
    assert metrics["eval_split"] == "dev" and metrics["eval_questions"] == len(dev_ids)

    # The saved weights are step 2's: reloaded, they give step 2's held-out answers, not the wrecked head's.
    loaded = run_folder.load_run(run_dir)
    again = evaluate(loaded.model, data.validation_examples, data.validation_features, loaded.tokenizer.pad_token_id)
    assert again.predictions == watch.predictions_at[2] != watch.predictions_at[4]
    assert again.metrics["f1"] == pytest.approx(scores[0])


def test_resume_of_an_interrupted_early_stopping_run_ends_identical(tiny_bert_dir, articles_dir, tmp_path):
    reference = train(_config(tiny_bert_dir, articles_dir, tmp_path / "ref"), log=_quiet, hooks=_Watch().hooks())
    assert reference["best_step"] == 2 and reference["stopped_at_step"] == 6

    def die_in_step_5(state):
        # Checkpoints every 2 steps: the last is step 4's, after the best (step 2) and one evaluation without
        # improvement, so the resumed run needs the checkpoint's best weights and patience count.
        if state.progress.step == 5:
            raise Killed

    interrupted = _config(tiny_bert_dir, articles_dir, tmp_path / "run")
    with pytest.raises(Killed):
        train(interrupted, log=_quiet, hooks=chain_hooks(_Watch().hooks(), TrainHooks(after_step=die_in_step_5)))
    # What the hook did to the head after step 2 is in the checkpoint's weights and scheduler.
    lines: list[str] = []
    resumed = train(interrupted, resume=True, log=lines.append, hooks=_Watch().hooks())
    assert "resumed from step 4 of 26" in lines
    for key in ("validation", "best_step", "stopped_at_step", "kept_step", "steps", "f1", "exact_match", "step_losses"):
        assert resumed[key] == reference[key], key
    predictions = [files.read_json(tmp_path / name / run_folder.PREDICTIONS_JSON) for name in ("ref", "run")]
    assert predictions[0] == predictions[1]


def test_an_early_stopped_run_killed_before_scoring_dev_resumes_to_the_same_end(tiny_bert_dir, articles_dir, tmp_path):
    reference = train(_config(tiny_bert_dir, articles_dir, tmp_path / "ref"), log=_quiet, hooks=_Watch().hooks())

    def die_when_scoring_dev(line: str) -> None:
        if line.startswith("scoring dev once"):  # stopped and checkpointed; dev not scored yet
            raise Killed

    config = _config(tiny_bert_dir, articles_dir, tmp_path / "run")
    with pytest.raises(Killed):
        train(config, log=die_when_scoring_dev, hooks=_Watch().hooks())
    lines: list[str] = []
    resumed = train(config, resume=True, log=lines.append)
    # Nothing trained or evaluated on held-out articles again: the best step's weights, then dev.
    assert "resumed from step 6 of 26" in lines and not any("validation loss" in line for line in lines)
    assert "scoring dev once, with step 2's weights" in lines
    for key in ("validation", "stopped_at_step", "kept_step", "f1", "exact_match"):
        assert resumed[key] == reference[key], key


def test_held_out_evaluations_without_a_patience_keep_the_last_weights(tiny_bert_dir, articles_dir, tmp_path):
    metrics = train(
        _config(tiny_bert_dir, articles_dir, tmp_path / "run", early_stopping_patience=None, eval_every_steps=4),
        log=_quiet,
    )
    # Every 4 steps and at each epoch's end (13 and 26); dev scored once, after the last step.
    assert [e["step"] for e in metrics["validation"]] == [4, 8, 12, 13, 16, 20, 24, 26]
    assert metrics["stopped_at_step"] is None and metrics["kept_step"] == metrics["steps"] == 26
    at_epoch_ends = [e["f1"] for e in metrics["validation"] if e["step"] in (13, 26)]
    assert [h["f1"] for h in metrics["history"]] == at_epoch_ends


def test_growing_gaps_score_at_rungs_and_epoch_ends_and_each_evaluation_reaches_its_hook(
    tiny_bert_dir, articles_dir, tmp_path
):
    seen: list[tuple[int, int]] = []  # (step, questions scored) per after_validation call

    def after_validation(state) -> None:
        seen.append((state.progress.validation[-1]["step"], len(state.progress.last_eval.scores)))

    hooks = TrainHooks(after_validation=after_validation)
    config = _config(
        tiny_bert_dir, articles_dir, tmp_path / "run", early_stopping_patience=None, eval_growth=3, validation_limit=2
    )
    metrics = train(config, log=_quiet, hooks=hooks)
    # 2, 6, 18 (2 x 3^k) and each epoch's end (13, 26), each told to the hook as it is recorded.
    assert [e["step"] for e in metrics["validation"]] == [2, 6, 13, 18, 26]
    assert seen == [(step, 2) for step in (2, 6, 13, 18, 26)]  # a sample of 2 of the held-out questions
    assert metrics["eval_questions"] > 2  # dev keeps its own size

    # Scored on the held-out questions themselves (a sweep trial): the last evaluation is the run's score.
    lines: list[str] = []
    own = _config(
        tiny_bert_dir, articles_dir, tmp_path / "own", early_stopping_patience=None, eval_growth=3,
        eval_split="validation",
    )  # fmt: skip
    scored = train(own, log=lines.append)
    assert "validation was scored at step 26, with the weights kept" in lines
    assert not any(line.startswith("scoring validation once") for line in lines)
    assert scored["f1"] == scored["validation"][-1]["f1"]


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--early-stopping-patience", "2"], "--early-stopping-patience needs --eval-every-steps"),
        (
            ["--eval-every-steps", "2", "--early-stopping-patience", "0"],
            "--early-stopping-patience: must be a whole number >= 1",
        ),
        (["--eval-every-steps", "0"], "--eval-every-steps: must be a whole number >= 1"),
        (["--eval-every-steps=-1"], "--eval-every-steps: must be a whole number >= 1"),
        (["--eval-every-steps", "1000"], "--eval-every-steps 1000 is more than the run's 4 steps"),
        (["--eval-every-steps", "2", "--eval-growth", "0.5"], "--eval-growth: must be a finite number >= 1, got 0.5"),
    ],
)
def test_bad_early_stopping_settings_are_one_line(flags, fragment, tiny_bert_dir, squad_dir, tmp_path, capsys):
    argv = ["train", "--model", str(tiny_bert_dir), "--data-dir", str(squad_dir), "--output-dir", str(tmp_path / "r")]
    argv += ["--max-length", "128", "--doc-stride", "32", "--batch-size", "2", "--epochs", "2"]
    argv += ["--validation-questions", "3"]
    assert main([*argv, *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("peftqa: error: ") and fragment in lines[0], lines


def test_the_report_shows_every_held_out_evaluation(tiny_bert_dir, articles_dir, tmp_path):
    from peftqa.report import build_report

    run_dir = tmp_path / "run"
    train(_config(tiny_bert_dir, articles_dir, run_dir), log=_quiet, hooks=_Watch().hooks())
    markdown, _ = build_report([run_dir], [], tmp_path / "report", qualitative=False, log=_quiet)
    text = markdown.read_text()
    assert "early stopping at step 6" in text and "step 2's weights" in text
    assert "| 2 |" in text and "kept" in text and "stopped" in text
