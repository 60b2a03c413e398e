"""The data flow as packages, earliest first: the one stage table.

A module may import from its own stage or an earlier one, never a later one (tests/test_imports.py
walks every import to check it; docs/architecture.md is generated from this table). Inference sits
before training because a run is scored while it trains; scoring is a leaf because every later stage
uses its pure functions.
"""

from __future__ import annotations

# (stage, the packages and leaf modules in it, what it does)
STAGES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "leaf helpers",
        ("errors", "checks", "files", "wheels", "hardware", "plots", "workers", "scoring", "stages"),
        "one-line errors, the one check of a config's values, atomic writes, wheels, the machine, figures, worker "
        "processes, EM/F1 and intervals",
    ),
    ("data", ("data",), "SQuAD v1.1/2.0 JSON, JSON Lines, `datasets` sources -> checked questions"),
    ("features", ("features",), "questions -> token windows with labels and offsets, cached; padded batches"),
    ("model", ("model",), "the pretrained encoder with a QA head (or an ONNX model behind the same interface)"),
    ("methods", ("methods",), "one module per fine-tuning method, one registry"),
    ("settings", ("settings",), "a run's settings as typed groups (RunConfig), flags and run.json come from them"),
    ("inference", ("inference",), "forward passes, post-processing, evaluate, a run folder loaded, answers"),
    ("training", ("training",), "the loop and what it needs: preparation, checkpoints, levers, hooks, tracking"),
    ("export", ("export",), "a run -> a merged Hugging Face folder or ONNX, checked, with a model card"),
    ("sweep", ("sweep",), "a method's learning rate chosen on held-out training questions (Optuna)"),
    ("report", ("report",), "results, paired comparisons, findings -> report.md/.html/.pdf"),
    ("study", ("study",), "sweep -> train at the chosen rate -> report, for several methods"),
    ("serve", ("serve",), "the comparison page and JSON API"),
    ("cli", ("cli", "__main__", "__init__"), "the `peftqa` command: flags -> configs -> the calls above"),
)
