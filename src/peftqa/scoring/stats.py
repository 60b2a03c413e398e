"""Confidence intervals over per-question scores (pure numpy, so reports and sweeps can share it).

A dev score such as F1 54.8 is the mean over ~10,570 questions; another run's 55.3 may be better or
just a different draw of luck on the same questions. The percentile bootstrap resamples the
questions with replacement and reads the interval off the spread of the resampled means. Comparing
two runs, the *paired* bootstrap resamples the same question indices for both, so the luck of which
questions are easy cancels and only the difference between the runs is left.

Every function is deterministic for a given input, number of resamples and seed.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

# Every interval peftqa prints (runs, `score --ci`, reports): this many percentile-bootstrap resamples
# of the questions and one fixed seed, so scoring or reporting a run twice prints the same numbers.
RESAMPLES = 2000
BOOTSTRAP_SEED = 0

# Resample indices are drawn in chunks of rows so that the index matrix and the gathered scores
# stay near this many bytes (10,570 dev questions x 2,000 resamples would be ~340 MB at once).
_CHUNK_BYTES = 32 * 1024 * 1024


def _as_scores(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of per-question scores, got shape {array.shape}")
    # An empty list has no mean; returning nan would pass silently into a report, so refuse it.
    if array.size == 0:
        raise ValueError(f"{name} is empty: a mean over no questions has no interval")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds a non-finite score (nan or inf)")
    return array


def _check_settings(resamples: int, confidence: float) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int | np.integer) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The mean of `values` over each of `resamples` draws of len(values) indices with replacement."""
    n = values.size
    rng = np.random.default_rng(seed)
    # Per row: 4 bytes of int32 index plus 8 of gathered float64, for each of the n questions.
    rows = max(1, _CHUNK_BYTES // (12 * n))
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        indices = rng.integers(0, n, size=(stop - start, n), dtype=np.int32 if n < 2**31 else np.int64)
        means[start:stop] = values[indices].mean(axis=1)
    return means


def _percentiles(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_interval(
    values: ArrayLike, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-question scores.

    Args:
        values: one score per question (0/100 exact match, 0..100 F1, ...), 1-D.
        resamples: how many resampled means the percentiles are read from.
        seed: seeds `np.random.default_rng`; the same seed gives the same interval.
        confidence: the interval's coverage, e.g. 0.95.

    Returns:
        (low, high).

    Raises:
        ValueError: `values` is empty, not 1-D or not finite, or a setting is out of range.
    """
    _check_settings(resamples, confidence)
    scores = _as_scores(values, "values")
    return _percentiles(_resampled_means(scores, resamples, seed), confidence)


def paired_difference(
    a: ArrayLike, b: ArrayLike, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED, confidence: float = 0.95
) -> dict[str, float | bool]:
    """Paired bootstrap of mean(a) - mean(b) for two runs scored on the same questions.

    Both runs are resampled at the same question indices, which is the same as resampling the
    per-question differences a - b; a run against itself therefore gives exactly [0, 0].

    Args:
        a, b: per-question scores of two runs, the same questions in the same order.
        resamples, seed, confidence: as in `bootstrap_interval`.

    Returns:
        {"difference": mean(a) - mean(b), "low": ..., "high": ...,
         "settled": whether the interval excludes 0 (the sign of the difference is not luck)}.

    Raises:
        ValueError: a and b differ in length, or as in `bootstrap_interval`.
    """
    _check_settings(resamples, confidence)
    first = _as_scores(a, "a")
    second = _as_scores(b, "b")
    if first.size != second.size:
        raise ValueError(
            f"a has {first.size} scores and b has {second.size}: a paired comparison needs the same questions"
        )
    differences = first - second
    low, high = _percentiles(_resampled_means(differences, resamples, seed), confidence)
    return {
        "difference": float(first.mean() - second.mean()),
        "low": low,
        "high": high,
        "settled": bool(low > 0.0 or high < 0.0),
    }


def format_interval(value: float, low: float, high: float, digits: int = 1) -> str:
    """'54.8 [52.1, 57.4]': a point value with its interval, for tables and logs."""
    if any(math.isnan(x) for x in (value, low, high)):
        return "n/a"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
