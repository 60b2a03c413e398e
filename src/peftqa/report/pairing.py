"""Which runs are seeds of one setting, and paired comparisons between runs or groups of seeds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from peftqa.methods.registry import trains_only_the_head
from peftqa.report.results import BOOTSTRAP_SEED, RESAMPLES, RunResult, _interval
from peftqa.scoring.stats import format_interval, paired_difference

NOT_SETTLED = "not settled (interval includes 0)"
# Whether a method's own parameters learned something: its F1 against the run that trains the QA head
# alone (method `head`), which every other method trains too, paired on the same questions.
BEYOND_HEAD = "learned beyond the QA head"
NOT_BEYOND_HEAD = "not shown to learn beyond the QA head at this budget"
# run.json config fields that do not change what a run learns: runs differing only in these (and the
# seed) are seeds of one setting.
_NOT_A_SETTING = {"seed", "output_dir", "data_dir", "checkpoint_every_steps", "eval_batch_size", "lr", "head_lr"}


@dataclass
class MethodGroup:
    """Runs of one method with the same settings apart from the seed (one run when trained once)."""

    label: str
    method: str
    runs: list[RunResult]

    @property
    def ids(self) -> list[str]:
        """Questions every run of the group was scored on."""
        first, *others = self.runs
        return [i for i in first.scores if all(i in r.scores for r in others)]

    def values(self, metric: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """Per question, `metric` averaged over the group's runs (its seeds)."""
        ids = self.ids if ids is None else ids
        return np.mean([r.values(metric, ids) for r in self.runs], axis=0) if ids else np.array([])

    def mean(self, metric: str) -> float:
        return float(np.mean([r.mean(metric) for r in self.runs]))

    def std(self, metric: str) -> float:
        """Standard deviation over seeds (n - 1); nan for a single run."""
        return float(np.std([r.mean(metric) for r in self.runs], ddof=1)) if len(self.runs) > 1 else float("nan")

    def formatted(self, metric: str) -> str:
        """The mean with the bootstrap interval of the per-question means over the group's seeds."""
        values = self.values(metric)
        return format_interval(float(values.mean()) if values.size else float("nan"), *_interval(values))

    @property
    def first(self) -> RunResult:
        return self.runs[0]


Item = TypeVar("Item", RunResult, MethodGroup)  # a run, or the seeds of one setting


def _setting(result: RunResult) -> dict[str, Any]:
    """What decides what a run learns: its config less the seed and bookkeeping, with the resolved rates."""
    config = {k: v for k, v in result.config.items() if k not in _NOT_A_SETTING}
    setting = {**config, "learning_rate": result.settings.get("learning_rate")}
    if "head_learning_rate" in result.settings:  # else a run whose head trained at its learning rate
        setting["head_lr"] = result.settings["head_learning_rate"]
    return setting


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def group_runs(results: Sequence[RunResult]) -> list[MethodGroup]:
    """Runs grouped by method and settings, seeds together. A group is labelled by its method, and where
    one method was run with several settings, by the settings that differ too: 'lora (learning_rate=0.01)'."""
    keyed: dict[str, list[RunResult]] = {}
    for result in results:
        keyed.setdefault(json.dumps(_setting(result), sort_keys=True, default=str), []).append(result)
    groups = []
    for members in keyed.values():
        mine = _setting(members[0])
        rivals = [_setting(m[0]) for m in keyed.values() if m[0].method == members[0].method and m is not members]
        differ = [k for k in mine if any(r.get(k) != mine[k] for r in rivals)]
        label = members[0].method_label
        if differ:
            label += " (" + ", ".join(f"{k}={_short(mine[k])}" for k in differ[:2]) + ")"
        groups.append(MethodGroup(label, members[0].method, members))
    return groups


def compare(a: RunResult | MethodGroup, b: RunResult | MethodGroup, metric: str) -> dict[str, Any]:
    """Paired bootstrap of a - b on the questions both were scored on: paired_difference's dict plus
    "questions" (how many were shared); with no shared question, difference and bounds are nan."""
    theirs = set(_ids_of(b))
    ids = [i for i in _ids_of(a) if i in theirs]
    if not ids:
        nan = float("nan")
        return {"difference": nan, "low": nan, "high": nan, "settled": False, "questions": 0}
    result = paired_difference(a.values(metric, ids), b.values(metric, ids), resamples=RESAMPLES, seed=BOOTSTRAP_SEED)
    return {**result, "questions": len(ids)}


def _ids_of(item: RunResult | MethodGroup) -> list[str]:
    return item.ids if isinstance(item, MethodGroup) else list(item.scores)


def verdict(comparison: dict[str, Any]) -> str:
    if not comparison["questions"]:
        return "no shared questions"
    return "settled" if comparison["settled"] else NOT_SETTLED


def signed_difference(comparison: dict[str, Any]) -> str:
    """'+3.1 [1.0, 5.2]': a signed difference in points with its interval."""
    text = format_interval(comparison["difference"], comparison["low"], comparison["high"])
    return text if text == "n/a" or text.startswith("-") else "+" + text


def reference_run(results: Sequence[RunResult]) -> tuple[RunResult, str]:
    """What every run is compared with: full fine-tuning (its best run by F1) when present, else the best run."""
    full = [r for r in results if r.method == "full"]
    if full:
        return max(full, key=lambda r: r.mean("f1")), "full fine-tuning"
    return max(results, key=lambda r: r.mean("f1")), "the best run by F1"


def floor_of(items: Sequence[Item]) -> Item | None:
    """The floor every method must clear: the run (or group of seeds) that trained the QA head alone, its
    best by F1 where there are several; None when there is none."""
    heads = [item for item in items if trains_only_the_head(item.method)]
    return max(heads, key=lambda item: item.mean("f1")) if heads else None


def floor_verdict(comparison: dict[str, Any]) -> str:
    """BEYOND_HEAD when a paired comparison with the floor (`compare(run, floor, "f1")`) is settled above
    it; else NOT_BEYOND_HEAD (below it, or not told apart from it on these questions)."""
    above = comparison["questions"] and comparison["settled"] and comparison["difference"] > 0
    return BEYOND_HEAD if above else NOT_BEYOND_HEAD


def beyond_head(result: Any, floor: Any) -> str:
    """A results-table cell: 'yes, +40.1 [37.0, 43.2]' where the run's (or group's) F1 is settled above the
    floor's, paired; else 'not shown, ...'; 'the floor' for the floor itself, 'the QA head alone' for
    another head-only run."""
    if trains_only_the_head(result.method):
        return "the floor" if result is floor else "the QA head alone"
    above = compare(result, floor, "f1")
    return f"{'yes' if floor_verdict(above) == BEYOND_HEAD else 'not shown'}, {signed_difference(above)}"
