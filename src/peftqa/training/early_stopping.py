"""`--eval-every-steps K` and `--early-stopping-patience N`: score held-out training articles while
training, stop once the held-out F1 has not improved for N evaluations, keep the best weights, and score
dev once, after training.

The held-out questions are whole training articles kept out of training (`--validation-questions`, as
a sweep's trials are scored on; `data.threshold_questions`), never dev: dev is scored only with the
weights kept, so the stopping step is never chosen on the questions reported. A run scored on the
validation split itself (a sweep trial) is validated on those same questions.

Evaluations happen every K steps and at each epoch's end (where the loop scores the run anyway), all
counted alike; with `--eval-growth G` at K, K*G, K*G^2, ... steps instead (a sweep's successive-halving
rungs: no evaluation its pruner does not read). Improvement is a strictly higher F1; the best is the
earliest evaluation with the highest F1. The best evaluation's trainable tensors are kept on the CPU
and saved in every checkpoint (with the progress naming their step), so `--resume` goes on from the
same best score, step and patience count.

The loop calls `Validation`: `due()` after each step, `score()` between steps (outside the training
levers, like every evaluation: the losses read, the model back in training mode after), `record()` with
each epoch's scores; it stops once `progress.stopped_at_step` is set. The hooks see the evaluations in
`progress.validation` and `progress.last_eval`, and `after_validation` is called after each one.
"""

from __future__ import annotations

from typing import Any

from peftqa import files
from peftqa.data import Example
from peftqa.errors import PeftqaError
from peftqa.features.windows import FeatureSet
from peftqa.inference import run_folder
from peftqa.inference.evaluate import evaluate
from peftqa.training.checkpoint import LastEvaluation, load_best_weights, trainable_state
from peftqa.training.hooks import TrainHooks, TrainingState

VALIDATION = "validation"


def scored_while_training(state: TrainingState) -> tuple[str, list[Example], FeatureSet]:
    """What the loop scores at each epoch's end: the held-out articles with --eval-every-steps, else the
    run's scored split; as (its name, questions, features)."""
    data = state.data
    if data.validation_examples is not None and data.validation_features is not None:
        return VALIDATION, data.validation_examples, data.validation_features
    return state.config.data.eval_split, data.eval_examples, data.eval_features


def best_evaluation(progress_validation: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The earliest evaluation with the highest F1 (a tie is no improvement), or None before any."""
    return max(progress_validation, key=lambda entry: entry["f1"]) if progress_validation else None


class Validation:
    """Held-out evaluations every `eval_every_steps` steps, and early stopping when a patience is set."""

    def __init__(self, state: TrainingState) -> None:
        tracking = state.config.tracking
        if tracking.eval_every_steps is None:
            raise ValueError("Validation needs config.tracking.eval_every_steps")
        if tracking.eval_every_steps > state.total_steps:
            raise PeftqaError(
                f"--eval-every-steps {tracking.eval_every_steps} is more than the run's {state.total_steps} steps; "
                "give a smaller one"
            )
        self.state, self.every, self.patience = state, tracking.eval_every_steps, tracking.early_stopping_patience
        self.growth = tracking.eval_growth
        if self.patience and state.progress.validation and state.best_weights is None:
            # Resumed: the best weights so far are in the checkpoint the progress came from.
            state.best_weights = load_best_weights(state.run_dir)
            if state.best_weights is None:
                raise PeftqaError(f"{state.run_dir}: the checkpoint holds no best weights to resume early stopping")

    @property
    def hooks(self) -> TrainHooks:
        return TrainHooks(after_finish=self._add_to_run_json)

    def due(self) -> bool:
        """Whether the step just taken is scored in the middle of an epoch (the loop scores its end)."""
        return self._scheduled(self.state.progress.step) and not self.state.at_epoch_end()

    def _scheduled(self, step: int) -> bool:
        """Whether `step` is one of the evaluation steps: every K, or K, K*G, K*G^2, ... with a growth G."""
        if self.growth == 1:
            return step % self.every == 0
        point = self.every
        while point < step:
            point = max(point + 1, round(point * self.growth))
        return point == step

    def score(self) -> None:
        """Score the held-out articles now and record it (the loop calls it outside the training levers)."""
        state = self.state
        _, examples, features = scored_while_training(state)
        result = evaluate(state.model, examples, features, state.pad_id, state.config.scoring, state.data.null_rule)
        state.progress.last_eval = LastEvaluation.of(result)
        entry = {"step": state.progress.step, "eval_loss": result.loss, **_scores(result.metrics)}
        state.log(
            f"step {entry['step']}: {VALIDATION} loss {entry['eval_loss']:.4f}, EM {entry['exact_match']:.2f}, "
            f"F1 {entry['f1']:.2f}"
        )
        self.record(entry)

    def record(self, entry: dict[str, Any]) -> None:
        progress = self.state.progress
        progress.validation.append({key: entry[key] for key in ("step", "eval_loss", "exact_match", "f1")})
        if self.patience:
            self._stop_when_patience_runs_out(entry, self.patience)
        if self.state.hooks.after_validation is not None:
            self.state.hooks.after_validation(self.state)

    def _stop_when_patience_runs_out(self, entry: dict[str, Any], patience: int) -> None:
        progress = self.state.progress
        best = best_evaluation(progress.validation)
        assert best is not None
        if best["step"] == entry["step"]:
            self.state.best_weights = trainable_state(self.state.model)
            return
        since = sum(1 for e in progress.validation if e["step"] > best["step"])
        if since >= patience:
            progress.stopped_at_step = entry["step"]
            self.state.log(
                f"early stopping at step {entry['step']}: no better {VALIDATION} F1 in {since} evaluation(s) "
                f"since step {best['step']} (F1 {best['f1']:.2f})"
            )

    def kept_step(self) -> int:
        """Whose weights the run keeps: the best evaluation's with a patience, else the last step's."""
        best = best_evaluation(self.state.progress.validation) if self.patience else None
        return best["step"] if best is not None else self.state.progress.step

    def final_scores(self) -> dict[str, Any]:
        """Load the best weights (early stopping), score the run's split (dev) once with the weights kept;
        the entry metrics.json's scores come from, and the evaluation in progress.last_eval."""
        state, kept = self.state, self.kept_step()
        last = state.progress.validation[-1] if state.progress.validation else None
        if state.data.validation_examples is state.data.eval_examples and last is not None and last["step"] == kept:
            # A run scored on its held-out questions (a sweep trial) has just scored them with these weights.
            state.log(f"{state.config.data.eval_split} was scored at step {kept}, with the weights kept")
            return dict(last)
        if kept != state.progress.step:
            if state.best_weights is None:
                raise PeftqaError(f"{state.run_dir}: step {kept}'s weights were not kept")
            state.model.load_state_dict(state.best_weights, strict=False)
        state.log(f"scoring {state.config.data.eval_split} once, with step {kept}'s weights")
        data = state.data
        result = evaluate(
            state.model, data.eval_examples, data.eval_features, state.pad_id, state.config.scoring, data.null_rule
        )
        state.progress.last_eval = LastEvaluation.of(result)
        return {"step": kept, "eval_loss": result.loss, **_scores(result.metrics)}

    def outcome(self) -> dict[str, Any]:
        """What metrics.json and run.json record: every held-out evaluation, the best and the stopping step."""
        progress = self.state.progress
        best = best_evaluation(progress.validation)
        return {
            "validation": progress.validation,
            "validation_description": self.state.data.validation_description,
            "best_step": best["step"] if best is not None else None,
            "stopped_at_step": progress.stopped_at_step,
            "kept_step": self.kept_step(),
        }

    def _add_to_run_json(self, metrics: dict[str, Any]) -> None:
        """run.json, written before the first step, gets how the run ended too."""
        path = self.state.run_dir / run_folder.RUN_JSON
        settings = files.read_json(path)
        settings["early_stopping"] = {k: metrics[k] for k in self.outcome()}
        files.write_json_atomic(path, files.finite(settings))


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"exact_match": metrics["exact_match"], "f1": metrics["f1"]}
