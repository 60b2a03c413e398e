"""The official SQuAD 2.0 evaluation script's scoring (evaluate-v2.0.py), copied as a reference the tests
compare peftqa's scores with: a helper module, not a test module."""

from __future__ import annotations


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


def official_v2(dataset, preds, na_probs=None, na_prob_thresh=1.0):
    """What evaluate-v2.0.py prints for `preds` on the articles `dataset` (with `na_probs`: its best thresholds)."""
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
