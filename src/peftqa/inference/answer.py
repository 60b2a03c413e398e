"""`peftqa predict RUN_DIR`: a run (or an export) answers one question (`answer_one`), or every question
of a file (`predict_file`: `--file QUESTIONS --out PREDICTIONS.json [--nbest K]`, run_qa.py's --do_predict).

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

from peftqa import files
from peftqa.checks import COUNT, check_value
from peftqa.data import load_squad
from peftqa.errors import PeftqaError
from peftqa.features.windows import build_features
from peftqa.inference import run_folder
from peftqa.inference.evaluate import EvalResult, NullRule, ask, evaluate

NBEST_JSON = "nbest.json"


def predict(
    run_dir: str | os.PathLike,
    question: str | None = None,
    context: str | None = None,
    top_k: int = 1,
    file: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    nbest: int | None = None,
) -> dict[str, Any] | None:
    """`peftqa predict`: one question's answer (`answer_one`), or a whole file's written (`predict_file`, None).

    Raises:
        PeftqaError: neither mode asked for, or both, or --file without --out (and what each mode refuses).
    """
    if file is None and out is None:
        if question is None or context is None:
            raise PeftqaError("give --question and --context, or --file QUESTIONS --out PREDICTIONS.json")
        return answer_one(run_dir, question, context, top_k)
    if file is None or out is None:
        raise PeftqaError("--file and --out go together: --file QUESTIONS --out PREDICTIONS.json")
    if question is not None or context is not None:
        raise PeftqaError("--file answers a whole file: drop --question and --context")
    predict_file(run_dir, file, out, nbest)
    return None


def answer_one(run_dir: str | os.PathLike, question: str, context: str, top_k: int = 1) -> dict[str, Any]:
    """{answer, start, end, score} of one question (and `alternatives` with top_k > 1); a run that may
    answer nothing (SQuAD 2.0) adds no_answer, null_score, span_score, null_threshold (and best_span).

    Raises:
        PeftqaError: an empty question or context, a bad run, or a context without any valid span.
    """
    if not question.strip() or not context.strip():
        raise PeftqaError("--question and --context must not be empty")
    check_value("--top-k", top_k, COUNT)
    for flag, text in (("--question", question), ("--context", context)):
        if files.has_surrogate(text):  # bytes that are not UTF-8 reach Python's argv as lone surrogates
            raise PeftqaError(f"{flag} is not valid UTF-8 text")
    loaded = run_folder.load_run(run_dir)
    threshold = loaded.null_threshold
    asked = ask(
        loaded.model, loaded.tokenizer, question, context, top_k, loaded.config.scoring, null_threshold=threshold
    )
    if not asked.candidates:
        raise PeftqaError("the context holds no span the model could answer with")
    answer = asked.to_dict()
    result = {key: answer[key] for key in ("answer", "start", "end", "score")}
    if threshold is not None:  # a run that may answer nothing says why it did or did not
        result.update({key: answer[key] for key in ("no_answer", "null_score", "span_score", "null_threshold")})
        result.update({"best_span": answer["best_span"]} if "best_span" in answer else {})
    if top_k > 1:
        result["alternatives"] = answer["alternatives"]
    return result


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
    check_value("--nbest", nbest, COUNT)
    if not out.parent.is_dir():
        raise PeftqaError(f"{out.parent}: no such folder for --out")
    if out.is_dir():
        raise PeftqaError(f"{out}: is a folder; --out names the predictions file")
    examples = load_squad(questions, answers_required=False)
    from peftqa.hardware import pick_device

    loaded = run_folder.load_run(run_dir, device=str(pick_device()))
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
        files.write_json_atomic(nbest_path, files.finite(_nbest(result, nbest)))  # a NaN model's scores: null
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
