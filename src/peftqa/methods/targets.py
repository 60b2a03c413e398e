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

# The query and value projections: what the VeRA and FourierFT papers adapt (and, same-shaped, one pair
# of VeRA's shared projections fits them all).
QUERY_VALUE = {
    "distilbert": ["q_lin", "v_lin"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "mpnet": ["q", "v"],
}
VERA_TARGETS = QUERY_VALUE

# The four attention projections (query, key, value, output), where peft's OFT, BOFT and HRA examples
# rotate. BERT's `dense` also names the feed-forward layers, so a regex keeps to the attention one.
_BERT_ATTENTION = r".*attention\.(self\.(query|key|value)|output\.dense)$"
ATTENTION = {
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin"],
    "bert": _BERT_ATTENTION,
    "roberta": _BERT_ATTENTION,
    "xlm-roberta": _BERT_ATTENTION,
    "electra": _BERT_ATTENTION,
    "mpnet": ["q", "k", "v", "o"],
}

# Every LayerNorm: the embeddings' and the two of each block (after attention, after the feed-forward).
_BERT_LAYER_NORMS = ["LayerNorm"]
LAYER_NORMS = {
    "distilbert": ["LayerNorm", "sa_layer_norm", "output_layer_norm"],
    "bert": _BERT_LAYER_NORMS,
    "roberta": _BERT_LAYER_NORMS,
    "xlm-roberta": _BERT_LAYER_NORMS,
    "electra": _BERT_LAYER_NORMS,
    "mpnet": _BERT_LAYER_NORMS,
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
