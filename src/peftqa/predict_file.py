"""`peftqa predict RUN_DIR --file QUESTIONS --out PREDICTIONS.json [--nbest K]`: answers for every
question of a file (run_qa.py's --do_predict).

The questions are SQuAD JSON or JSON Lines, with or without answers (answers are not read). The
answers are the official predictions format, {id: answer} with "" where the model answers nothing,
found exactly as `peftqa evaluate` finds them (same windows, batches, post-processing and null
threshold); with --nbest, nbest.json beside them holds each question's K best spans with their
scores, and its null score.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftqa import files, runs
from peftqa.data import load_squad
from peftqa.errors import PeftqaError
from peftqa.features import build_features
from peftqa.predict import EvalResult, NullRule, evaluate

NBEST_JSON = "nbest.json"


def predict_file(
    run_dir: str | os.PathLike,
    questions: str | os.PathLike,
    out: str | os.PathLike,
    nbest: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Answer every question of `questions` with a run (or an export) and write {id: answer} to `out`.

    Args:
        run_dir: a run directory or a folder written by `peftqa export`.
        questions: SQuAD JSON or JSON Lines, plain or gzipped (or a `datasets` source); answers optional.
        out: the predictions file to write (its folder must exist).
        nbest: also write nbest.json beside `out`: the `nbest` best spans of each question, with scores.
        log: gets the summary line.

    Returns: questions answered, how many got no answer, seconds, and the files written.

    Raises:
        PeftqaError: a bad run, a bad question file (named by file, line or id, and field), an --out
            whose folder is missing, or an --nbest below 1; nothing is written then.
    """
    out = Path(out)
    if nbest is not None and nbest < 1:
        raise PeftqaError(f"--nbest must be at least 1, got {nbest}")
    if not out.parent.is_dir():
        raise PeftqaError(f"{out.parent}: no such folder for --out")
    if out.is_dir():
        raise PeftqaError(f"{out}: is a folder; --out names the predictions file")
    examples = load_squad(questions, answers_required=False)
    from peftqa.hardware import pick_device

    loaded = runs.load_run(run_dir, device=str(pick_device()))
    scoring = loaded.config.scoring
    if nbest is not None and nbest > scoring.n_best:
        # More candidates per window could change the best answer: the answers would not be evaluate's.
        raise PeftqaError(f"--nbest must be at most the run's n_best ({scoring.n_best}), got {nbest}")
    began = time.perf_counter()
    features = build_features(examples, loaded.tokenizer, scoring.max_length, scoring.doc_stride)
    threshold = loaded.null_threshold
    # The run's rule, never one chosen on these questions (they have no answers to choose by).
    null = NullRule(threshold) if threshold is not None else None
    result = evaluate(loaded.model, examples, features, loaded.tokenizer.pad_token_id, scoring, null, progress=True)
    seconds = time.perf_counter() - began
    written = [out]
    if nbest is not None:
        nbest_path = out.parent / NBEST_JSON
        files.write_json_atomic(nbest_path, _nbest(result, nbest))
        written.append(nbest_path)
    files.write_json_atomic(out, result.predictions)
    unanswered = sum(1 for answer in result.predictions.values() if not answer)
    log(
        f"predict: {len(examples)} questions answered in {seconds:.1f} s ({len(examples) / max(seconds, 1e-9):.1f}/s), "
        f"{unanswered} with no answer; wrote {', '.join(str(path) for path in written)}"
    )
    return {"questions": len(examples), "no_answer": unanswered, "seconds": seconds, "files": [str(p) for p in written]}


def _nbest(result: EvalResult, k: int) -> dict[str, Any]:
    """question id -> its answer, null score and k best spans (text, character offsets, logit score, probability)."""
    return {
        question_id: {
            "answer": result.predictions[question_id],
            "null_score": result.null_scores[question_id],
            "spans": [
                {
                    "text": candidate.text,
                    "start": candidate.start,
                    "end": candidate.end,
                    "score": candidate.logit_score,
                    "probability": candidate.probability,
                }
                for candidate in ranked[:k]
            ],
        }
        for question_id, ranked in result.candidates.items()
    }
