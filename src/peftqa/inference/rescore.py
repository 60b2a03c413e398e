"""Re-score a saved run from disk, and score a predictions file like the official scripts (v1.1, or
v2.0 for data with unanswerable questions)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from peftqa import files
from peftqa.data import gold_answers, load_squad
from peftqa.errors import PeftqaError
from peftqa.inference import run_files, run_folder
from peftqa.inference.evaluate import NullRule, evaluate, run_questions
from peftqa.inference.run_data import locate_questions
from peftqa.scoring.metrics import compute_metrics, compute_metrics_v2, question_scores, question_scores_v2

SCORE_VERSIONS = (1, 2)


def evaluate_run(
    run_dir: str | os.PathLike,
    eval_limit: int | None = None,
    data_dir: str | None = None,
    train_file: str | None = None,
    dev_file: str | None = None,
) -> dict[str, Any]:
    """Reload a run and score it again on the questions it was scored on (its split, sample and seed),
    so with the run's own eval_limit it reproduces metrics.json, intervals included. A run trained on
    SQuAD 2.0 data answers with the null threshold it chose (metrics.json), never one chosen here.

    Args:
        run_dir: a finished run directory, or a folder written by `peftqa export` (hf or onnx), scored
            with its run's windows and questions; then also how many answers equal the run's own.
        eval_limit: a sample of N questions, drawn as the run draws them; None: the run's own setting.
        data_dir: where SQuAD is when the files run.json recorded are gone; None: the run's own
            data directory if it still holds them, else PEFTQA_DATA_DIR or the user cache.
        train_file, dev_file: other question sources to score on (dev, or train for a validation run);
            None: the run's own.
    """
    from peftqa.hardware import pick_device

    loaded = run_folder.load_run(run_dir, device=str(pick_device()))
    config = locate_questions(loaded.config, loaded.settings, data_dir)
    replaced: dict[str, Any] = {"eval_limit": eval_limit, "train_file": train_file, "dev_file": dev_file}
    config = config.replace(**{k: v for k, v in replaced.items() if v is not None})
    examples, features = run_questions(config, loaded.tokenizer)
    threshold = loaded.null_threshold
    null = NullRule(threshold) if threshold is not None else None
    result = evaluate(loaded.model, examples, features, loaded.tokenizer.pad_token_id, config.scoring, null)
    return {
        "exact_match": result.metrics["exact_match"],
        "f1": result.metrics["f1"],
        "exact_match_ci": result.metrics["exact_match_ci"],
        "f1_ci": result.metrics["f1_ci"],
        **result.answerability,
        "eval_loss": result.loss,
        "eval_questions": len(examples),
        "eval_description": config.questions.describe(len(examples)),
        "eval_seconds": result.seconds,
        **agreement_with_run(loaded, result.predictions),
    }


def agreement_with_run(loaded: run_folder.LoadedRun, predictions: dict[str, str]) -> dict[str, Any]:
    """For an exported folder: on how many questions its answers are the run's own (run_predictions.json);
    {} for a run directory, whose answers are its own."""
    if "export" not in loaded.settings:
        return {}
    original = run_files.read_predictions(loaded.run_dir / run_folder.RUN_PREDICTIONS_JSON)
    shared = [question for question in predictions if question in original]
    same = sum(predictions[question] == original[question] for question in shared)
    return {"same_answers_as_run": same, "compared_with_run": len(shared)}


def score_file(
    dev_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    ci: bool = False,
    version: int | None = None,
    na_probs_path: str | os.PathLike | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, Any]:
    """`evaluate-v1.1.py DEV PREDICTIONS`, or `evaluate-v2.0.py` for data with unanswerable questions:
    predictions = {id: answer} ("" for no answer).

    Args:
        dev_path: the questions the predictions answer (any format `load_squad` reads).
        predictions_path: JSON {question id: answer text}.
        ci: also give 95% percentile-bootstrap intervals (stats.RESAMPLES, stats.BOOTSTRAP_SEED) of both means as
            `exact_match_ci` / `f1_ci` = [low, high], and the number of `questions` they are over.
            Without it the result is exactly the official script's dict.
        version: 1 or 2; None: 2 when some question of `dev_path` has no answer, else 1. Version 1 is
            {"exact_match", "f1"} (an unanswered id scores 0); version 2 is evaluate-v2.0.py's dict.
        na_probs_path, na_prob_thresh: version 2 only, the official --na-prob-file (JSON {id: number}) and
            --na-prob-thresh; with a file the dict also has best_exact / best_f1 and their thresholds.
    """
    if version is not None and version not in SCORE_VERSIONS:
        raise PeftqaError(f"--version must be 1 or 2, got {version}")
    examples = load_squad(Path(dev_path))
    predictions = _read_mapping(Path(predictions_path), str, "answer text")
    gold = gold_answers(examples)
    version = version or (1 if all(gold.values()) else 2)
    if version == 1 and na_probs_path is not None:
        raise PeftqaError("--na-probs applies to SQuAD 2.0 scoring (--version 2)")
    if version == 1:
        metrics = compute_metrics(predictions, gold)
        result: dict[str, Any] = {"exact_match": metrics["exact_match"], "f1": metrics["f1"]}
        per_question = list(question_scores(predictions, gold).values()) if ci else []
    else:
        na_probs = _read_mapping(Path(na_probs_path), (int, float), "number") if na_probs_path else None
        result = compute_metrics_v2(predictions, gold, na_probs, na_prob_thresh)
        per_question = list(question_scores_v2(predictions, gold, na_probs, na_prob_thresh).values()) if ci else []
    if ci:
        from peftqa.scoring.stats import bootstrap_interval

        for key in ("exact_match", "f1"):
            low, high = bootstrap_interval([scores[key] for scores in per_question])
            result[f"{key}_ci"] = [low, high]
        result["questions"] = len(per_question)
    return result


def _read_mapping(path: Path, kind: type | tuple[type, ...], what: str) -> dict[str, Any]:
    value = files.read_json(path)
    if not isinstance(value, dict) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value.values()):
        raise PeftqaError(f"{path}: expected a JSON object {{question id: {what}}}")
    return value
