import pytest

from peftqa.scoring.metrics import compute_metrics, exact_match, f1, normalize_answer, score_answer


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
# The reference: evaluate-v2.0.py as published with SQuAD 2.0 (the functions it runs, written out here
# from that definition), to compare peftqa's numbers with bit for bit.
def _official_normalize(s):
    import re
    import string

    def remove_articles(text):
        return re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_tokens(s):
    return _official_normalize(s).split() if s else []


def _official_f1(a_gold, a_pred):
    import collections

    gold_toks, pred_toks = _official_tokens(a_gold), _official_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def _official_v2(dataset, preds, na_probs=None, na_prob_thresh=1.0):
    qid_to_has_ans = {qa["id"]: bool(qa["answers"]) for a in dataset for p in a["paragraphs"] for qa in p["qas"]}
    exact_raw, f1_raw = {}, {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                gold = [a["text"] for a in qa["answers"] if _official_normalize(a["text"])] or [""]
                a_pred = preds[qa["id"]]
                exact_raw[qa["id"]] = max(int(_official_normalize(a) == _official_normalize(a_pred)) for a in gold)
                f1_raw[qa["id"]] = max(_official_f1(a, a_pred) for a in gold)
    probs = na_probs if na_probs is not None else {k: 0.0 for k in preds}

    def apply(scores):
        return {q: (float(not qid_to_has_ans[q]) if probs[q] > na_prob_thresh else s) for q, s in scores.items()}

    def make(exact, f1_scores, qid_list=None):
        if not qid_list:
            total = len(exact)
            return {"exact": 100.0 * sum(exact.values()) / total, "f1": 100.0 * sum(f1_scores.values()) / total,
                    "total": total}  # fmt: skip
        total = len(qid_list)
        return {"exact": 100.0 * sum(exact[k] for k in qid_list) / total,
                "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total, "total": total}  # fmt: skip

    exact_thresh, f1_thresh = apply(exact_raw), apply(f1_raw)
    out = make(exact_thresh, f1_thresh)
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        ids = [k for k, v in qid_to_has_ans.items() if v is wanted]
        if ids:
            out.update({f"{prefix}_{k}": v for k, v in make(exact_thresh, f1_thresh, ids).items()})
    if na_probs is not None:

        def find_best(scores):
            num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
            cur_score = num_no_ans
            best_score = cur_score
            best_thresh = 0.0
            for qid in sorted(probs, key=lambda k: probs[k]):
                if qid not in scores:
                    continue
                if qid_to_has_ans[qid]:
                    diff = scores[qid]
                else:
                    diff = -1 if preds[qid] else 0
                cur_score += diff
                if cur_score > best_score:
                    best_score = cur_score
                    best_thresh = probs[qid]
            return 100.0 * best_score / len(scores), best_thresh

        out["best_exact"], out["best_exact_thresh"] = find_best(exact_raw)
        out["best_f1"], out["best_f1_thresh"] = find_best(f1_raw)
    return out


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
    assert compute_metrics_v2(preds, gold) == _official_v2(dataset, preds)
    for thresh in (1.0, 0.0, -1.5):
        ours = compute_metrics_v2(preds, gold, na_probs, thresh)
        assert ours == _official_v2(dataset, preds, na_probs, thresh)
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
