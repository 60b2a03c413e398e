import pytest

from peftqa.scoring.metrics import compute_metrics, exact_match, f1, normalize_answer, score_answer
from tests.official_squad2 import official_v2


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
    from peftqa.scoring.metrics import question_scores

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


# ---------------------------------------------------------------------------- SQuAD 2.0
# Checked against tests.helpers.official_v2, the official evaluate-v2.0.py written out.


def _random_v2_case(seed: int):
    """A SQuAD 2.0 dataset of 40 questions (a third without an answer), predictions and na_probs."""
    import random

    rng = random.Random(seed)
    words = ["the", "Jane", "Austen", "Paris", "café", "1813", "a", "novel", "Thomas", "Egerton", "."]
    qas = []
    for i in range(40):
        answers = [] if i % 3 == 0 else [{"text": " ".join(rng.choices(words, k=rng.randint(1, 3))), "answer_start": 0}
                                          for _ in range(rng.randint(1, 3))]  # fmt: skip
        qas.append({"id": f"q{i}", "question": "?", "answers": answers})
    dataset = [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]
    preds = {qa["id"]: rng.choice(["", " ".join(rng.choices(words, k=rng.randint(1, 3)))]) for qa in qas}
    na_probs = {qa["id"]: round(rng.uniform(-3, 3), rng.choice([0, 2])) for qa in qas}  # ties: rounded to integers
    gold = {qa["id"]: [a["text"] for a in qa["answers"]] for qa in qas}
    return dataset, preds, na_probs, gold


@pytest.mark.parametrize("seed", range(6))
def test_squad2_scores_equal_the_official_script_bit_for_bit(seed):
    from peftqa.scoring.metrics import compute_metrics_v2, question_scores_v2

    dataset, preds, na_probs, gold = _random_v2_case(seed)
    assert compute_metrics_v2(preds, gold) == official_v2(dataset, preds)
    for thresh in (1.0, 0.0, -1.5):
        ours = compute_metrics_v2(preds, gold, na_probs, thresh)
        assert ours == official_v2(dataset, preds, na_probs, thresh)
        assert list(ours)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
        per_question = question_scores_v2(preds, gold, na_probs, thresh)
        assert sum(s["f1"] for s in per_question.values()) / 40 == pytest.approx(ours["f1"])


def test_a_question_without_an_answer_scores_one_exactly_when_the_prediction_is_empty():
    from peftqa.scoring.metrics import compute_metrics_v2, f1_v2, question_scores_v2

    gold = {"none": [], "some": ["Jane Austen"]}
    assert question_scores_v2({"none": "", "some": "Jane"}, gold)["none"] == {"exact_match": 100.0, "f1": 100.0}
    assert question_scores_v2({"none": "Austen", "some": ""}, gold) == {
        "none": {"exact_match": 0.0, "f1": 0.0},
        "some": {"exact_match": 0.0, "f1": 0.0},
    }
    # A missing prediction is the empty answer; a gold answer that normalises to nothing is dropped.
    assert question_scores_v2({}, {"none": [], "the": ["the"]}) == {
        "none": {"exact_match": 100.0, "f1": 100.0},
        "the": {"exact_match": 100.0, "f1": 100.0},
    }
    assert f1_v2("", "") == 1.0 and f1_v2("x", "") == 0.0 and f1_v2("Jane Austen wrote", "Jane Austen") == 0.8
    metrics = compute_metrics_v2({"none": "", "some": "Jane Austen"}, gold)
    assert metrics == {
        "exact": 100.0, "f1": 100.0, "total": 2, "HasAns_exact": 100.0, "HasAns_f1": 100.0, "HasAns_total": 1,
        "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 1,
    }  # fmt: skip


def test_best_threshold_search_answers_nothing_above_the_threshold_it_finds():
    from peftqa.scoring.metrics import compute_metrics_v2

    gold = {"a": ["x"], "b": [], "c": ["y"], "d": []}
    preds = {"a": "x", "b": "z", "c": "y", "d": "z"}
    # Answerable questions are surer (lower null differences) than the unanswerable ones.
    na_probs = {"a": -2.0, "b": 1.0, "c": -1.0, "d": 2.0}
    found = compute_metrics_v2(preds, gold, na_probs)
    assert found["best_f1"] == 100.0 and found["best_f1_thresh"] == -1.0
    assert compute_metrics_v2(preds, gold, na_probs, na_prob_thresh=found["best_f1_thresh"])["f1"] == 100.0
