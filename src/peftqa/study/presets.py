"""What `peftqa study --preset NAME` trains: the methods, their learning-rate grids, and the one budget
every method is swept and finally trained at (`StudyPreset`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from peftqa.errors import PeftqaError
from peftqa.methods import get_method, methods_in_all
from peftqa.model.backbone import DEFAULT_MODEL
from peftqa.settings.run_config import PRESETS

# The original experiment's grid (its best value was its top edge).
ORIGINAL_LRS = [1e-5, 2e-5, 3e-5, 4e-5, 5e-5]


@dataclass(frozen=True)
class StudyPreset:
    """What one study preset trains; None limits mean all questions.

    A method's sweep trials are its final run at each learning rate of its grid: the same questions
    (`final_train_limit`), epochs and dev questions, judged on held-out training articles and pruned by
    successive halving; the study's final run is the best trial (peftqa.study.pipeline).
    """

    description: str
    methods: tuple[str, ...]  # default methods (--methods overrides)
    run: dict[str, Any]  # RunConfig settings shared by every trial and final run
    final_train_limit: int | None  # training questions of every trial and final run (None: all)
    final_epochs: float  # epochs; with early_stopping_patience the cap
    final_eval_limit: int | None  # dev questions the final runs are scored on, once, at the end
    held_out_limit: int | None  # held-out training questions (of validation_questions' articles) per evaluation
    early_stopping_patience: int | None = None  # None: a fixed budget, every epoch's held-out F1 reported
    first_rung: float = 0.25  # successive halving: share of the steps at the first rung
    halving_factor: int = 4  # rungs at first_rung x this^k of the steps
    lr_grid: str = "default"  # which of each method's grids (MethodSpec.sweep_lrs) the sweeps search
    sweep_lrs: dict[str, list[float]] = field(default_factory=dict)  # per-method grids that replace lr_grid's
    extend_edges: int = 2  # our grids grow past an edge best this many times (comparison grids never do)
    compare_grids: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # extra named grids


STUDY_PRESETS: dict[str, StudyPreset] = {
    # `make demo` must stay within 10 minutes on a 2-core CPU with bf16 units, so the budget is fixed, not
    # early stopping (which needs a cap of two or more epochs, doubling every surviving trial): one epoch
    # of 1,000 questions (1,111 windows: 70 steps of 16). Each method's three rates run from the grid's
    # centre; the held-out F1 is read after 18 steps and at the end, and successive halving lets the first
    # trial finish and stops a later one that is settled behind it at step 18: a method costs 70 + 2 x 18
    # steps when the centre leads clearly, up to 3 x 70 when the rates are not yet told apart there. A
    # surviving trial is the final run, so pruning cannot save its steps: 2,000 questions would not fit.
    # Timings: docs/results/ (the quick study).
    "quick": StudyPreset(
        description="MiniLM-L6, 3 lrs per method, each a run on 1,000 questions (1 epoch) pruned by successive "
        "halving on 250 held-out questions; the best is the final run, scored on 500 dev questions",
        # The two PEFT methods and the reference they are judged against (--methods adds bitfit, dora, ...).
        methods=("head", "lora", "ia3", "full"),
        run=PRESETS["quick"],  # the study sets its own question limits and epochs below
        final_train_limit=1000,
        final_epochs=1.0,
        final_eval_limit=500,
        held_out_limit=250,
        lr_grid="quick",
        extend_edges=1,
    ),
    # The original experiment (DistilBERT, full data, 3 epochs fixed, LoRA and (IA)3) with its grid and ours.
    "seed": StudyPreset(
        description="DistilBERT, full SQuAD, 3 epochs; sweeps of full runs with the original grid and with ours",
        methods=("head", "lora", "ia3"),  # the floor first: what the QA head alone learns
        run={"model": DEFAULT_MODEL, "dropout": None},  # the checkpoint's dropout, as the original run had
        final_train_limit=None,
        final_epochs=3.0,
        final_eval_limit=None,
        held_out_limit=1000,
        first_rung=0.125,  # the first rung after 3/8 of an epoch: a GPU job, but nine full runs are many
        compare_grids={"original": {"lora": ORIGINAL_LRS, "ia3": ORIGINAL_LRS}},
    ),
    # Every method on MiniLM-L6 with full data (a GPU job), trained until the held-out F1 stops improving.
    "full-data": StudyPreset(
        description="MiniLM-L6, every method, full SQuAD, early stopping (at most 3 epochs)",
        methods=tuple(methods_in_all()),
        run={"model": "minilm-l6"},
        final_train_limit=None,
        final_epochs=3.0,
        final_eval_limit=None,
        held_out_limit=1000,
        early_stopping_patience=2,  # two evaluations (3/4 of an epoch) without a better held-out F1
        first_rung=0.125,
    ),
}


def get_preset(name: str) -> StudyPreset:
    if name not in STUDY_PRESETS:
        raise PeftqaError(f"unknown study preset '{name}'; known: {', '.join(sorted(STUDY_PRESETS))}")
    return STUDY_PRESETS[name]


def parse_methods(text: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """`lora,ia3` -> ["lora", "ia3"], each checked against the registry; `all`: every registered method
    that runs with its default options (MethodSpec.in_all: not `peft`, which needs a config file)."""
    if text is None:
        return list(default)
    if text == "all":
        return methods_in_all()
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if not names:
        raise PeftqaError("--methods names no method")
    for name in names:
        get_method(name)
    return names


def grids(preset: StudyPreset, method: str) -> dict[str, list[float]]:
    """Named learning-rate grids for a method: ours ("") first, then the preset's comparison grids."""
    named = {"": preset.sweep_lrs.get(method) or get_method(method).lr_grid(preset.lr_grid)}
    named.update({name: lrs[method] for name, lrs in preset.compare_grids.items() if method in lrs})
    return named
