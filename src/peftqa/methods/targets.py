"""Which layers each method adapts, per architecture (peft has no defaults for DistilBERT)."""

from __future__ import annotations

from peftqa.errors import PeftqaError

# Every linear layer of the encoder blocks (attention projections and both feed-forward layers).
ALL_LINEAR = {
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "bert": ["query", "key", "value", "dense"],
    "roberta": ["query", "key", "value", "dense"],
    "xlm-roberta": ["query", "key", "value", "dense"],
    "electra": ["query", "key", "value", "dense"],
    "mpnet": ["q", "k", "v", "o", "dense"],
}

# VeRA: query and value projections, the paper's choice, and same-shaped so one pair of projections fits.
VERA_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "mpnet": ["q", "v"],
}

# (IA)3 rescales keys, values and the feed-forward activation (the input of the second FF layer).
# BERT's `output.dense` also names `attention.output.dense`, so a regex keeps to the FF one.
_BERT_IA3 = (r".*\.(key|value)$|.*layer\.\d+\.output\.dense$", r".*layer\.\d+\.output\.dense$")
IA3_TARGETS: dict[str, tuple[list[str] | str, list[str] | str]] = {
    "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
    "bert": _BERT_IA3,
    "roberta": _BERT_IA3,
    "xlm-roberta": _BERT_IA3,
    "electra": _BERT_IA3,
    "mpnet": (r".*\.(k|v)$|.*layer\.\d+\.output\.dense$", r".*layer\.\d+\.output\.dense$"),
}


def lookup(table: dict, model_type: str, method: str):
    """The table's entry for `model_type`, or an error that says how to name targets by hand."""
    if model_type not in table:
        raise PeftqaError(
            f"no default target modules for {method} on '{model_type}' models "
            f"(known: {', '.join(sorted(table))}); name them with --target-modules"
        )
    return table[model_type]
