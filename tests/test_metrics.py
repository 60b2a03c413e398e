import pytest

from peftqa.metrics import compute_metrics, exact_match, f1, normalize_answer, score_answer


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("an apple, a pear!", "apple pear"),
        ("  Hello,   World.  ", "hello world"),
        ("Theatre", "theatre"),  # 'the' inside a word stays
        ("U.S.A.", "usa"),
    ],
)
def test_normalize_answer_follows_the_official_rules(text, normalised):
    assert normalize_answer(text) == normalised


def test_exact_match_ignores_case_articles_and_punctuation():
    assert exact_match("the Denver Broncos!", "Denver Broncos") == 1.0
    assert exact_match("Denver", "Denver Broncos") == 0.0


def test_f1_counts_repeated_tokens_as_a_multiset():
    # Sets would give overlap 1 ("a b"): the multiset gives 1 as well for prediction "b b b" vs "b".
    assert f1("b b b", "b") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    # and 2 shared tokens when both sides repeat: precision 2/3, recall 2/2.
    assert f1("b b c", "b b") == pytest.approx(0.8)


def test_f1_partial_overlap():
    assert f1("Jane Austen wrote", "Jane Austen") == pytest.approx(0.8)
    assert f1("nothing shared", "Jane Austen") == 0.0
    assert f1("", "Jane Austen") == 0.0


def test_score_takes_the_best_over_all_gold_answers():
    scores = score_answer("in 1813", ["1813", "in 1813", "the year 1813"])
    assert scores == {"exact_match": 100.0, "f1": 100.0}
    scores = score_answer("1813 exactly", ["1813", "1812"])
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(100 * 2 / 3)


def test_compute_metrics_scores_unanswered_questions_as_zero():
    gold = {"a": ["Paris"], "b": ["London"]}
    assert compute_metrics({"a": "Paris"}, gold) == {"exact_match": 50.0, "f1": 50.0, "count": 2}


def test_question_scores_are_per_question_and_average_to_compute_metrics():
    from peftqa.metrics import question_scores

    gold = {"a": ["Paris"], "b": ["London", "in London"], "c": ["1813"], "d": ["Jane Austen"]}
    predictions = {"a": "paris", "b": "London town", "d": "Austen", "unknown": "x"}
    scores = question_scores(predictions, gold)
    assert list(scores) == ["a", "b", "c", "d"]  # the gold order; ids only in predictions are ignored
    assert scores["a"] == {"exact_match": 100.0, "f1": 100.0}
    assert scores["b"] == score_answer("London town", gold["b"])
    assert scores["c"] == {"exact_match": 0.0, "f1": 0.0}  # unanswered
    assert scores["d"]["f1"] == pytest.approx(100 * 2 / 3)
    totals = compute_metrics(predictions, gold)
    assert totals["exact_match"] == pytest.approx(sum(s["exact_match"] for s in scores.values()) / 4)
    assert totals["f1"] == pytest.approx(sum(s["f1"] for s in scores.values()) / 4)


def test_compute_metrics_sums_like_the_official_script():
    # evaluate-v1.1.py sums the 0..1 scores, then scales by 100 / total: same float, bit for bit.
    gold = {str(i): ["alpha beta gamma delta"] for i in range(7)}
    predictions = {str(i): " ".join(["alpha", "beta", "gamma", "delta", "x"][: i % 5 + 1]) for i in range(7)}
    official = sum(f1(predictions[i], gold[i][0]) for i in gold)
    assert compute_metrics(predictions, gold)["f1"] == 100.0 * official / 7
