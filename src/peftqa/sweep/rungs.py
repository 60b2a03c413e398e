"""Successive halving's side of a trial: how many steps a trial takes (so, where its rungs are), the
held-out scores of each of its evaluations (`held_out.json` in its folder: what a pruned trial leaves
behind), the hook that reports them to Optuna and stops a trial that falls behind, and whether the
held-out questions separate the chosen trial from the next one (a paired bootstrap over them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftqa import files
from peftqa.scoring.stats import paired_difference
from peftqa.sweep.sweep_config import Rungs, SweepConfig, search_space, trial_config

if TYPE_CHECKING:
    from peftqa.training.hooks import TrainHooks, TrainingState

HELD_OUT_JSON = "held_out.json"  # step -> the held-out evaluation's F1, EM, interval, seconds and per-question F1


def plan_rungs(config: SweepConfig, questions: int, log: Callable[[str], None]) -> Rungs:
    """The trials' rungs, from their step count: their data is tokenised here, once (every trial of a
    sweep reads the same features from the cache; K workers would otherwise all build them at once)."""
    from peftqa.model.backbone import load_tokenizer, resolve_model
    from peftqa.training.prepare import prepare_data

    first = {name: values[0] for name, values in search_space(config).items()}
    run = trial_config(config, first, questions, None)
    data = prepare_data(run, load_tokenizer(resolve_model(run.model)), log)
    per_epoch = math.ceil(len(data.train_features) / run.optimisation.batch_size)
    return Rungs.of(config, max(1, math.ceil(run.optimisation.epochs * per_epoch)))


def read_evaluations(run_dir: str | Path | None) -> dict[int, dict[str, Any]]:
    """A trial's held-out evaluations by step ({} when it has none)."""
    path = Path(run_dir) / HELD_OUT_JSON if run_dir else None
    if path is None or not path.is_file():
        return {}
    return {int(step): record for step, record in files.read_json(path).items()}


def _record(state: TrainingState) -> dict[str, Any]:
    """The evaluation just recorded, as held_out.json keeps it."""
    entry, scored = state.progress.validation[-1], state.progress.last_eval
    assert scored is not None
    return {
        "f1": entry["f1"],
        "exact_match": entry["exact_match"],
        "f1_ci": scored.intervals["f1"],
        "train_seconds": round(state.progress.train_seconds, 1),
        "scores": {question: score["f1"] for question, score in scored.scores.items()},
    }


def halving_hooks(trial: Any, rungs: Rungs) -> TrainHooks:
    """Each held-out evaluation: kept in held_out.json, reported to Optuna, and the trial pruned there
    when it is behind at a rung (never at its end, nor once early stopping has ended it). A resumed
    trial reports its evaluations from before the interruption at its first step, and is judged on
    them again at once."""
    import optuna

    from peftqa.training.hooks import TrainHooks

    reported: set[int] = set()
    resumed = [False]  # whether the evaluations from before an interruption were reported

    def report(step: int, record: dict[str, Any], state: TrainingState) -> None:
        trial.report(record["f1"], step)
        reported.add(step)
        if step >= rungs.total or state.progress.stopped_at_step is not None or not trial.should_prune():
            return
        behind = behind_the_leader(trial, step, record.get("scores") or {})
        if behind is not None and not behind["settled"]:
            state.log(
                f"step {step}: behind at this rung by {behind['difference']:.2f} held-out F1 "
                f"[{behind['low']:+.2f}, {behind['high']:+.2f}], not settled on {behind['questions']} questions: "
                "trained on"
            )
            return
        trial.set_user_attr("train_seconds", record["train_seconds"])
        raise optuna.TrialPruned(f"held-out F1 {record['f1']:.2f} at step {step} of {rungs.total}: behind at this rung")

    def after_validation(state: TrainingState) -> None:
        records = {str(step): record for step, record in read_evaluations(state.run_dir).items()}
        records[str(state.progress.step)] = _record(state)
        files.write_json_atomic(state.run_dir / HELD_OUT_JSON, records)
        report(state.progress.step, records[str(state.progress.step)], state)

    def after_step(state: TrainingState) -> None:
        if resumed[0]:
            return
        resumed[0] = True  # once, at the first step this process takes
        for step, record in sorted(read_evaluations(state.run_dir).items()):
            if step < state.progress.step and step not in reported:
                report(step, record, state)

    return TrainHooks(after_step=after_step, after_validation=after_validation)


def behind_the_leader(trial: Any, step: int, scores: dict[str, float]) -> dict[str, Any] | None:
    """How far this trial is behind the best other trial at `step`: a paired bootstrap of their per-question
    held-out F1 (the leader's minus this one's), `settled` only when the leader is ahead with 95 %
    confidence. A short run sits near the floor at an early rung, where rates differ by noise: the
    halving hooks prune only a trial that is settled behind. None when no other trial's scores at that
    step can be read (another machine's trial folder): then the pruner's verdict stands."""
    rivals = [t for t in trial.study.get_trials(deepcopy=False) if t.number != trial.number]
    rivals = [t for t in rivals if step in t.intermediate_values]
    if not rivals or not scores:
        return None
    leader = max(rivals, key=lambda t: t.intermediate_values[step])
    theirs = read_evaluations(leader.user_attrs.get("run_dir")).get(step)
    shared = [question for question in scores if theirs is not None and question in theirs["scores"]]
    if theirs is None or not shared:
        return None
    paired = paired_difference([theirs["scores"][q] for q in shared], [scores[q] for q in shared])
    ahead = bool(paired["settled"]) and float(paired["difference"]) > 0
    return {key: paired[key] for key in ("difference", "low", "high")} | {"settled": ahead, "questions": len(shared)}


def held_out_score(metrics: dict[str, Any]) -> dict[str, Any]:
    """A finished trial's held-out evaluation whose weights it kept (the last, or early stopping's best)."""
    return next(entry for entry in metrics["validation"] if entry["step"] == metrics["kept_step"])


def separation(best: dict[str, Any] | None, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Whether the held-out questions tell the chosen trial from the next: a paired bootstrap of their
    per-question F1. The next is the best other finished trial, both at the step whose weights they
    kept; without one, the pruned trial that went furthest, both at the step it was last scored at.
    None when there is no other trial or the scores are missing (a sweep from before they were kept)."""
    if best is None:
        return None
    others = [r for r in rows if r["number"] != best["number"] and r["f1"] is not None]
    complete = [r for r in others if r["state"] == "COMPLETE"]
    pruned = [r for r in others if r["state"] == "PRUNED" and r.get("steps")]
    if complete:
        rival = max(complete, key=lambda r: (r["f1"], r["exact_match"] or 0.0))
        steps = (best.get("kept_step"), rival.get("kept_step"))
    elif pruned:
        rival = max(pruned, key=lambda r: (r["steps"], r["f1"]))
        steps = (rival["steps"], rival["steps"])
    else:
        return None
    mine = read_evaluations(best.get("run_dir")).get(steps[0] or -1)
    theirs = read_evaluations(rival.get("run_dir")).get(steps[1] or -1)
    if mine is None or theirs is None:
        return None
    shared = [question for question in mine["scores"] if question in theirs["scores"]]
    if not shared:
        return None
    paired = paired_difference([mine["scores"][q] for q in shared], [theirs["scores"][q] for q in shared])
    return {"next": rival["params"], "next_state": rival["state"], "steps": list(steps), "questions": len(shared)} | {
        key: paired[key] for key in ("difference", "low", "high", "settled")
    }


def separation_text(summary: dict[str, Any]) -> str:
    """One sentence on whether the held-out questions separate the chosen trial from the next."""
    found, best = summary.get("separation"), summary.get("best")
    if not best:
        return ""
    if not found:
        return "No other trial was scored on the same held-out questions, so nothing tells the choice from another."
    shown = lambda params: ", ".join(f"{k}={v:g}" for k, v in params.items())  # noqa: E731
    mine, theirs = found["steps"]
    where = f"at step {mine}" if mine == theirs else f"at steps {mine} and {theirs}"
    pruned = " (pruned there)" if found["next_state"] == "PRUNED" else ""
    verdict = (
        "settled: the held-out questions separate them"
        if found["settled"]
        else "not settled: the held-out questions cannot tell them apart"
    )
    return (
        f"The chosen {shown(best['params'])} against the next, {shown(found['next'])}{pruned}, {where}: "
        f"{found['difference']:+.2f} [{found['low']:+.2f}, {found['high']:+.2f}] held-out F1 on "
        f"{found['questions']:,} questions (paired bootstrap), {verdict}."
    )
