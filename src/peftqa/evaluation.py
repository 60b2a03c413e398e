"""Re-score a saved run from disk, and score a predictions file like the official script."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from peftqa import files, runs
from peftqa.data import gold_answers, load_squad
from peftqa.errors import PeftqaError
from peftqa.metrics import compute_metrics, question_scores
from peftqa.predict import evaluate, run_questions


def evaluate_run(
    run_dir: str | os.PathLike, eval_limit: int | None = None, data_dir: str | None = None
) -> dict[str, Any]:
    """Reload a run and score it again on the questions it was scored on (its split, sample and seed),
    so with the run's own eval_limit it reproduces metrics.json, intervals included.

    Args:
        run_dir: a finished run directory, or a folder written by `peftqa export` (hf or onnx), scored
            with its run's windows and questions; then also how many answers equal the run's own.
        eval_limit: a sample of N questions, drawn as the run draws them; None: the run's own setting.
        data_dir: where SQuAD is; None: the run's own setting, else the default.
    """
    from peftqa.hardware import pick_device

    loaded = runs.load_run(run_dir, device=str(pick_device()))
    config = loaded.config
    if eval_limit is not None:
        config = dataclasses.replace(config, eval_limit=eval_limit)
    examples, features = run_questions(config, loaded.tokenizer, data_dir)
    result = evaluate(loaded.model, examples, features, loaded.tokenizer.pad_token_id, config.scoring)
    return {
        "exact_match": result.metrics["exact_match"],
        "f1": result.metrics["f1"],
        "exact_match_ci": result.metrics["exact_match_ci"],
        "f1_ci": result.metrics["f1_ci"],
        "eval_loss": result.loss,
        "eval_questions": len(examples),
        "eval_description": config.questions.describe(len(examples)),
        "eval_seconds": result.seconds,
        **agreement_with_run(loaded, result.predictions),
    }


def agreement_with_run(loaded: runs.LoadedRun, predictions: dict[str, str]) -> dict[str, Any]:
    """For an exported folder: on how many questions its answers are the run's own (run_predictions.json);
    {} for a run directory, whose answers are its own."""
    if "export" not in loaded.settings:
        return {}
    original = files.read_json(loaded.run_dir / runs.RUN_PREDICTIONS_JSON)
    shared = [question for question in predictions if question in original]
    same = sum(predictions[question] == original[question] for question in shared)
    return {"same_answers_as_run": same, "compared_with_run": len(shared)}


def score_file(dev_path: str | os.PathLike, predictions_path: str | os.PathLike, ci: bool = False) -> dict[str, Any]:
    """`evaluate-v1.1.py DEV PREDICTIONS`: predictions = {id: answer}; unanswered ids score 0.

    Args:
        dev_path: the SQuAD v1.1 file the predictions answer.
        predictions_path: JSON {question id: answer text}.
        ci: also give 95% percentile-bootstrap intervals (stats.RESAMPLES, stats.BOOTSTRAP_SEED) of both means as
            `exact_match_ci` / `f1_ci` = [low, high], and the number of `questions` they are over.
            Without it the result is exactly the official script's {"exact_match", "f1"}.
    """
    examples = load_squad(Path(dev_path))
    predictions = files.read_json(Path(predictions_path))
    if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
        raise PeftqaError(f"{predictions_path}: expected a JSON object {{question id: answer text}}")
    gold = gold_answers(examples)
    metrics = compute_metrics(predictions, gold)
    result: dict[str, Any] = {"exact_match": metrics["exact_match"], "f1": metrics["f1"]}
    if ci:
        from peftqa.stats import bootstrap_interval

        per_question = list(question_scores(predictions, gold).values())
        for key in ("exact_match", "f1"):
            low, high = bootstrap_interval([scores[key] for scores in per_question])
            result[f"{key}_ci"] = [low, high]
        result["questions"] = len(per_question)
    return result
