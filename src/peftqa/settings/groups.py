"""A run's settings in typed groups, one dataclass each: which questions (DataSettings), how the
weights are optimised (OptimisationSettings), how answers are cut and searched (ScoringSettings), the
speed levers of the training step (SpeedSettings) and what watches the run (TrackingSettings).
RunConfig (run_config.py) composes them; every field with help is a flag of `peftqa train`, and
`--help` lists the flags by group. Also the worker fields that `peftqa sweep` and `peftqa study` share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.checks import COUNT, FINITE, FRACTION, NOT_NEGATIVE, POSITIVE, SEED, Range, check_fields
from peftqa.data import EVAL_SAMPLES, EVAL_SPLITS, QuestionChoice
from peftqa.errors import PeftqaError
from peftqa.methods.head import DEFAULT_HEAD_LR
from peftqa.settings.fields import MAY_CHANGE, setting

LEVER_CHOICES = ("auto", "on", "off")  # a GPU lever's setting: auto is on for CUDA only
ON_OFF = ("on", "off")
PRECISIONS = ("auto", "fp32", "bf16")  # the training step's arithmetic (levers.precision)
REPORT_TO = (
    "none",
    "tensorboard",
    "mlflow",
)  # where a run's curves and figures are tracked live (peftqa.training.tracking)


def workers_setting(what: str) -> Any:
    """The `workers` field of a command that runs `what` side by side (sweep trials, a study's runs)."""
    return setting(
        None,
        f"worker processes running {what} side by side (default 1): one GPU each while there are GPUs enough, "
        "else sharing; on a CPU the cores are split between them",
        within=COUNT,
    )


def workers_per_gpu_setting() -> Any:
    """The `workers_per_gpu` field beside `workers_setting` (peftqa.workers reads both)."""
    return setting(
        None,
        "workers sharing each GPU (without --workers: this many on every GPU; default: as even as --workers allows)",
        within=COUNT,
    )


@dataclass(frozen=True)
class DataSettings:
    """Which questions a run trains on and is scored on. RunConfig.questions makes the QuestionChoice of them."""

    data_dir: str | None = setting(
        None, "folder with the SQuAD files (default: PEFTQA_DATA_DIR or user cache)", resume=MAY_CHANGE
    )
    train_file: str | None = setting(
        None,
        "training questions: SQuAD JSON (v1.1 or v2.0) or JSON Lines, plain or gzipped, or a `datasets` folder or "
        "name[:split] (default: train-v1.1.json in the data directory)",
        # A moved file may resume: its fingerprint is compared instead (checkpoint.check_same_data).
        resume=MAY_CHANGE,
    )
    dev_file: str | None = setting(
        None, "dev questions, in any --train-file format (default: dev-v1.1.json there)", resume=MAY_CHANGE
    )
    train_limit: int | None = setting(
        None, "train on a seeded random sample of this many questions (default: all)", within=COUNT
    )
    eval_limit: int | None = setting(None, "score on a sample of this many questions (default: all)", within=COUNT)
    validation_limit: int | None = setting(
        None,
        "a run scored on dev: how many of the held-out training questions it is scored on while training (and "
        "chooses a null threshold on), a seeded sample (default: --eval-limit)",
        within=COUNT,
    )
    eval_split: str = setting(
        QuestionChoice.eval_split,
        "score on dev, or on validation: whole training articles held out from training (what sweeps use)",
        choices=EVAL_SPLITS,
    )
    eval_sample: str = setting(
        QuestionChoice.eval_sample,
        "random: seeded sample over every article; first: the first N in file order",
        choices=EVAL_SAMPLES,
    )
    eval_seed: int = setting(
        QuestionChoice.eval_seed,
        "seed of the scored sample and the held-out articles: same for every run, so paired",
        within=SEED,
    )
    validation_questions: int = setting(
        QuestionChoice.validation_questions,
        "held-out training questions (whole articles) for eval-split validation",
        within=COUNT,
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def questions(self, seed: int) -> QuestionChoice:
        """Which questions these settings train and score on; `seed` draws the training sample."""
        return QuestionChoice(
            train_file=self.train_file,
            dev_file=self.dev_file,
            train_limit=self.train_limit,
            train_seed=seed,
            eval_split=self.eval_split,
            eval_limit=self.eval_limit,
            eval_sample=self.eval_sample,
            eval_seed=self.eval_seed,
            validation_questions=self.validation_questions,
            validation_limit=self.validation_limit,
        )


@dataclass(frozen=True)
class OptimisationSettings:
    """How the trainable weights are optimised: how long, how fast, and from which random start."""

    epochs: float = setting(3.0, "passes over the training features (fractions allowed)", within=POSITIVE)
    max_steps: int | None = setting(
        None,
        "stop after this many optimiser steps (overrides --epochs; default: as many as --epochs makes)",
        within=COUNT,
    )
    lr: float | None = setting(None, "peak learning rate, or from:SWEEP_DIR (default: the method's)", within=POSITIVE)
    head_lr: float | None = setting(
        None,
        f"peak learning rate of the freshly initialised QA head (default: {DEFAULT_HEAD_LR:g}; full fine-tuning: "
        "its --lr; the head method: not given, its --lr is the head's)",
        within=POSITIVE,
    )
    batch_size: int = setting(32, "training features per optimiser step", within=COUNT)
    warmup_fraction: float = setting(0.1, "share of the steps with a linear learning-rate warm-up", within=FRACTION)
    weight_decay: float = setting(
        0.01, "AdamW decoupled weight decay (not on biases and LayerNorm)", within=NOT_NEGATIVE
    )
    max_grad_norm: float = setting(1.0, "gradient clipping: the largest norm of the gradients", within=POSITIVE)
    # Off by default: in short runs dropout only slows learning, and attention dropout takes PyTorch off
    # its fused attention kernel while the dropout masks cost a share of every step
    # (docs/results/2026-11-26-dropout.md).
    dropout: float | None = setting(
        0.0,
        "every dropout in the model (hidden states, attention), replacing the checkpoint's; the seed preset "
        "keeps the checkpoint's",
        within=FRACTION,
    )
    seed: int = setting(42, "seeds the sample, the head's initialisation, the adapter and the batch order", within=SEED)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ScoringSettings:
    """How a trained model is asked and scored: windows, answer search, batch size and the null threshold.
    One object, so train's per-epoch evaluation, `peftqa evaluate`, `peftqa predict`, the report and the
    web page cut and search the same way; a run's own settings are `RunConfig.scoring`."""

    max_length: int = setting(384, "tokens per window", within=Range(at_least=128, at_most=512))
    doc_stride: int = setting(
        128, "tokens shared by consecutive windows, fewer than half --max-length", within=NOT_NEGATIVE
    )
    n_best: int = setting(20, "candidate starts and ends per window in post-processing", within=COUNT)
    max_answer_tokens: int = setting(30, "longest answer considered, in tokens", within=COUNT)
    # None: inference.evaluate picks by device.
    eval_batch_size: int | None = setting(
        None, "features per forward pass when scoring (default: 64 on a GPU, 16 on a CPU)", within=COUNT
    )
    # The setting a run is trained with; the threshold in force is the run's metrics.json's (LoadedRun).
    null_threshold: float | None = setting(
        None,
        "data with unanswerable questions (SQuAD 2.0): answer nothing when the null score beats the best span's by "
        "more than this (default: chosen on held-out training articles, never on dev)",
        within=FINITE,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.doc_stride >= self.max_length // 2:
            raise PeftqaError(
                f"--doc-stride: must be less than half --max-length ({self.max_length}), got {self.doc_stride}"
            )


DEFAULT_SCORING = ScoringSettings()


@dataclass(frozen=True)
class SpeedSettings:
    """How fast the training step runs; no default changes a CPU run's numbers. The levers are applied by
    peftqa.training.levers; "auto" switches a lever on for CUDA. frozen_bf16 is off unless asked for: it
    changes the numerics (bf16 matmuls) and was slower where it was measured (docs/training.md)."""

    log_every_steps: int = setting(
        50,
        "read the loss and counts from the device every this many steps (progress bar, log); 1: every step",
        within=COUNT,
        resume=MAY_CHANGE,
    )
    device_batches: str = setting(
        "on",
        "on: every feature is copied to the device once and batches are gathered there; off: built in NumPy",
        choices=ON_OFF,
        resume=MAY_CHANGE,  # the same batches, bit for bit
    )
    precision: str = setting(
        "auto",
        "the training step's arithmetic: auto (bf16 autocast on CUDA and on CPUs with bf16 units, fp32 elsewhere), "
        "fp32 or bf16; weights, optimizer state, saved adapters and evaluation stay fp32",
        choices=PRECISIONS,
    )
    frozen_bf16: str = setting(
        "off",
        "adapter methods: frozen linear weights stored in bf16 while training, which changes the numerics (off; on; "
        "auto: on CUDA)",
        choices=LEVER_CHOICES,
    )
    fused_lora: str = setting(
        "auto",
        "LoRA layers compute base(x) + s*B(A(x)) as one addmm while training (auto: on CUDA; on; off)",
        choices=LEVER_CHOICES,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class TrackingSettings:
    """What watches a run while it trains: checkpoints, held-out evaluations, early stopping, live tracking."""

    checkpoint_every_steps: int = setting(
        200, "also checkpoint inside an epoch, so --resume loses little", within=COUNT
    )
    eval_every_steps: int | None = setting(
        None,
        "score the held-out training articles (--validation-questions, never dev) every this many steps and at "
        "each epoch's end; dev is scored once, after training (default: never)",
        within=COUNT,
    )
    eval_growth: float = setting(
        1.0,
        "with --eval-every-steps K: score the held-out articles at K, K*G, K*G^2, ... steps (and each epoch's end) "
        "instead of every K steps (a sweep's successive-halving rungs); 1: every K steps",
        within=Range(at_least=1),
    )
    early_stopping_patience: int | None = setting(
        None,
        "with --eval-every-steps: stop after this many evaluations without a better held-out F1, and keep the "
        "best evaluation's weights (default: never stop early)",
        within=COUNT,
    )
    report_to: str = setting(
        "none",
        "track the run live: tensorboard (event files in RUN_DIR/tensorboard) or mlflow (MLFLOW_TRACKING_URI, "
        "else a SQLite store in ./mlruns); the losses are sent every --log-every-steps steps",
        choices=REPORT_TO,
        resume=MAY_CHANGE,  # where the run is tracked only watches it
    )
    tracking_dir: str | None = setting(
        None,
        "tensorboard: event files in DIR/<run name>; mlflow: the local store DIR/mlflow.db when no URI is set "
        "(default: RUN_DIR/tensorboard, ./mlruns)",
        resume=MAY_CHANGE,
    )
    # The MLflow run a sweep opened: its trials' runs are nested under it (set by the sweep, no flag).
    tracking_parent: str | None = field(default=None, metadata={"resume": MAY_CHANGE})

    def __post_init__(self) -> None:
        check_fields(self)
        if self.early_stopping_patience is not None and self.eval_every_steps is None:
            raise PeftqaError(
                "--early-stopping-patience needs --eval-every-steps (how often the held-out F1 is scored)"
            )
