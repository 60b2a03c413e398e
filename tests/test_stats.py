import numpy as np
import pytest

from peftqa.scoring.stats import bootstrap_interval, format_interval, paired_difference


def _exact_match_scores(count: int, accuracy: float, seed: int) -> np.ndarray:
    """0/100 per-question exact match, like a run that gets `accuracy` of the questions right."""
    return np.random.default_rng(seed).choice([0.0, 100.0], size=count, p=[1 - accuracy, accuracy])


def test_interval_contains_the_mean_of_known_scores():
    scores = [0, 100, 100, 0, 100, 50, 75, 100, 0, 100]  # mean 62.5
    low, high = bootstrap_interval(scores, resamples=1000, seed=3)
    assert low < 62.5 < high
    assert 0 <= low and high <= 100
    # One repeated score has no spread: the interval is that score.
    assert bootstrap_interval([40.0] * 25) == (40.0, 40.0)


def test_interval_shrinks_with_more_questions():
    few = bootstrap_interval(_exact_match_scores(100, 0.6, seed=1))
    many = bootstrap_interval(_exact_match_scores(10_000, 0.6, seed=1))
    # Width goes as 1/sqrt(n): 10x narrower for 100x the questions, give or take resampling noise.
    assert (many[1] - many[0]) * 5 < few[1] - few[0]
    assert many[0] < 60 < many[1]


def test_same_seed_same_interval_and_confidence_widens_it():
    scores = _exact_match_scores(500, 0.5, seed=2)
    assert bootstrap_interval(scores, seed=7) == bootstrap_interval(scores, seed=7)
    assert bootstrap_interval(scores, seed=7) != bootstrap_interval(scores, seed=8)
    narrow = bootstrap_interval(scores, confidence=0.5)
    wide = bootstrap_interval(scores, confidence=0.99)
    assert wide[0] < narrow[0] and narrow[1] < wide[1]


def test_a_run_against_itself_is_exactly_zero_and_not_settled():
    scores = _exact_match_scores(300, 0.55, seed=4)
    assert paired_difference(scores, scores) == {"difference": 0.0, "low": 0.0, "high": 0.0, "settled": False}


def test_a_clearly_better_run_is_settled_and_a_coin_flip_is_not():
    weaker = _exact_match_scores(2000, 0.5, seed=5)
    # The stronger run also answers a fifth of the questions the weaker one missed.
    fixed = (weaker == 0) & (np.random.default_rng(6).random(weaker.size) < 0.2)
    stronger = np.where(fixed, 100.0, weaker)
    result = paired_difference(stronger, weaker)
    assert result["difference"] == pytest.approx(stronger.mean() - weaker.mean())
    assert result["settled"] and 0 < result["low"] < result["difference"] < result["high"]
    assert paired_difference(weaker, stronger)["high"] < 0
    # Two runs of equal skill, wrong on different questions: the interval straddles 0.
    other = _exact_match_scores(2000, 0.5, seed=9)
    even = paired_difference(other, weaker)
    assert not even["settled"] and even["low"] < 0 < even["high"]


def test_pairing_is_tighter_than_comparing_two_separate_intervals():
    # Same questions easy or hard for both runs: the pair's difference is far less noisy than each mean.
    base = np.random.default_rng(10).uniform(0, 100, 1000)
    better = np.minimum(base + 2.0, 100.0)
    paired = paired_difference(better, base)
    alone = bootstrap_interval(base)
    assert paired["settled"]
    assert paired["high"] - paired["low"] < (alone[1] - alone[0]) / 10


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: paired_difference([1.0, 2.0], [1.0]), "same questions"),
        (lambda: bootstrap_interval([]), "empty"),
        (lambda: bootstrap_interval([[1.0, 2.0]]), "1-D"),
        (lambda: bootstrap_interval([1.0, float("nan")]), "non-finite"),
        (lambda: bootstrap_interval([1.0], resamples=0), "resamples"),
        (lambda: bootstrap_interval([1.0], confidence=1.0), "confidence"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_format_interval():
    assert format_interval(54.83, 52.06, 57.449) == "54.8 [52.1, 57.4]"
    assert format_interval(0.5, 0.25, 0.75, digits=2) == "0.50 [0.25, 0.75]"
    assert format_interval(float("nan"), 1.0, 2.0) == "n/a"
