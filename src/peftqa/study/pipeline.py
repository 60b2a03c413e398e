"""`peftqa study --preset quick|seed|full-data`: data -> a sweep per method, whose trials are its final
run at each learning rate -> the best trial is the final run -> one report. Every step re-uses what an
earlier, interrupted study finished (sweep trials and runs resume), so running the command again
continues where it stopped.

    STUDY_DIR/
      sweeps/<method>[-<grid>][-q<budget>]/   one Optuna sweep per method (per comparison grid, per budget)
      runs/<method>[-<grid>][-q<budget>]/     the sweep's best trial, copied; -seedN: further seeds
      report/                                 report.md, report.html
      study.json                              the preset, the chosen learning rates, results and step timings
      logs/<run>.log                          with --workers: each further seed's own output

A sweep's trials train on the final run's questions for its epochs (the preset's budget), are judged on
held-out training articles (never dev) at successive-halving rungs, and those that finish are scored on
dev once (peftqa.sweep, `score_dev`): the trial chosen by held-out F1 is the final run, so no run is
trained twice. With `--budgets` the study runs once per training budget, each with its own sweeps.

With `workers=K` every sweep runs K trials at a time (peftqa.sweep), and further seeds K at a time too,
each in its own process (peftqa.workers).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa import files
from peftqa.checks import COUNT, check_fields
from peftqa.errors import PeftqaError
from peftqa.settings.fields import setting
from peftqa.settings.groups import PRECISIONS, REPORT_TO, workers_per_gpu_setting, workers_setting
from peftqa.settings.run_config import RunConfig
from peftqa.study.budgets import budget_record, budget_suffix, fitting_budgets, parse_budgets
from peftqa.study.finals import adopt_best_trial, seed_config, train_in_workers
from peftqa.study.presets import ORIGINAL_LRS, STUDY_PRESETS, StudyPreset, get_preset, grids, parse_methods
from peftqa.study.record import STUDY_JSON, earlier_calls, study_folders
from peftqa.sweep import SweepConfig, run_sweep

# The preset's names, offered here too (the cli, the tests and the benchmarks import them from the pipeline).
__all__ = [
    "ORIGINAL_LRS",
    "STUDY_JSON",
    "STUDY_PRESETS",
    "StudyPreset",
    "get_preset",
    "parse_budgets",
    "parse_methods",
    "study_folders",
]

# StudyConfig fields that are RunConfig settings of every sweep trial and final run, when given.
_RUN_SETTINGS = ("model", "precision", "train_file", "dev_file", "validation_questions", "report_to", "tracking_dir")


class _Steps:
    """Numbered progress lines with elapsed time, and each step's duration for study.json."""

    def __init__(self, total: int, log: Callable[[str], None]):
        self.total, self.log, self.done = total, log, 0
        self.began = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def run(self, label: str, work: Callable[[], Any]) -> Any:
        self.done += 1
        elapsed = time.perf_counter() - self.began
        self.log(f"\n[{self.done}/{self.total}] {label}  (study time so far {elapsed / 60:.1f} min)")
        started = time.perf_counter()
        result = work()
        self.seconds[label] = round(time.perf_counter() - started, 1)
        return result


def _base_config(preset: StudyPreset, method: str, data_dir: str, overrides: dict[str, Any]) -> RunConfig:
    """A final run's settings less its learning rate: the preset's, the study's replacements, its dev
    questions and its early stopping (the sweep sets the held-out evaluations' pace: its rungs)."""
    patience = preset.early_stopping_patience
    values = {
        **preset.run,
        **overrides,
        "method": method,
        "data_dir": data_dir,
        "eval_limit": preset.final_eval_limit,
        "early_stopping_patience": patience,
        "eval_every_steps": 1 if patience else None,
    }
    return RunConfig.from_dict(values)


@dataclass(frozen=True)
class StudyConfig:
    """What `peftqa study` runs: the preset and what replaces its choices (each field with help is a flag)."""

    # No `choices`: the preset is looked up when the study runs (get_preset), so one registered later counts.
    preset: str = setting("quick", f"the study to run: {', '.join(sorted(STUDY_PRESETS))} (see docs/studies.md)")
    methods: str | None = setting(None, "comma-separated, e.g. lora,ia3,bitfit, or all (default per preset)")
    output_dir: str | None = setting(None, "study folder (default: studies/<preset>)")
    data_dir: str | None = setting(
        None, "SQuAD folder (default: PEFTQA_DATA_DIR or the user cache, fetched if missing)"
    )
    model: str | None = setting(None, "replace the preset's model (default: the preset's)")
    precision: str | None = setting(
        None, "every run's training arithmetic: auto, fp32 or bf16 (default: the preset's, auto)", choices=PRECISIONS
    )
    seeds: int = setting(1, "final runs per method with different seeds (report: mean and std)", within=COUNT)
    budgets: str | None = setting(
        None,
        "comma-separated training budgets in questions, e.g. 250,1000,4000: the study at each (every method swept "
        "and trained on that many questions, the same dev questions); the report plots F1 against them "
        "(default: the preset's questions)",
    )
    workers: int | None = workers_setting("sweep trials and further seeds")
    workers_per_gpu: int | None = workers_per_gpu_setting()
    train_file: str | None = setting(
        None, "your training questions (SQuAD JSON v1.1/v2.0 or JSON Lines; default: SQuAD v1.1 train)"
    )
    dev_file: str | None = setting(None, "your dev questions, in the same formats (default: SQuAD v1.1 dev)")
    validation_questions: int | None = setting(
        None,
        "held-out training questions (whole articles) the sweeps and the null threshold are chosen on (default: 2000)",
        within=COUNT,
    )
    pdf: bool = setting(False, "also print the report to report/report.pdf (needs Debian chromium and playwright)")
    report_to: str | None = setting(
        None,
        "track every sweep trial and final run live: tensorboard or mlflow (see `peftqa train --help`; default: none)",
        choices=REPORT_TO,
    )
    tracking_dir: str | None = setting(None, "where the tracker writes (default: as `peftqa train --help` says)")
    overrides: dict[str, Any] = field(default_factory=dict)  # other RunConfig settings replacing the preset's

    def __post_init__(self) -> None:
        check_fields(self)
        parse_budgets(self.budgets)  # a bad list is refused now, before any folder is made

    def run_overrides(self) -> dict[str, Any]:
        """The RunConfig settings that replace the preset's: `overrides`, then the model, precision, files,
        held-out size and tracking when given."""
        given = {name: getattr(self, name) for name in _RUN_SETTINGS if getattr(self, name) is not None}
        return {**self.overrides, **given}


def run_study(config: StudyConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) a whole study and write its report; returns the study summary.

    Args:
        config: the preset and what replaces its choices; final runs get seeds seed, seed+1, ... when
            config.seeds > 1 (the report gives mean and std).
        log: where progress lines go.
    """
    from peftqa.hardware import visible_gpus
    from peftqa.report import REPORT_PDF, build_report, check_pdf_printer, results_table
    from peftqa.training.loop import train
    from peftqa.workers import plan_slots, worker_count

    preset_name, seeds, workers_per_gpu = config.preset, config.seeds, config.workers_per_gpu
    preset = get_preset(preset_name)
    names = parse_methods(config.methods, preset.methods)
    budgets = parse_budgets(config.budgets)
    folder = Path(config.output_dir or Path("studies") / preset_name)
    overrides = config.run_overrides()
    if config.pdf:
        check_pdf_printer()  # now, not after hours of training
    processes = worker_count(config.workers, workers_per_gpu, len(visible_gpus()))
    parallel = processes > 1
    log(f"study '{preset_name}': {preset.description}; methods {', '.join(names)}; output {folder}")

    def planned(budgets: list[int]) -> list[tuple[str, str, list[float], int | None]]:
        sizes: list[int | None] = [*budgets] or [None]
        return [
            (method, grid, lrs, budget)
            for budget in sizes
            for method in names
            for grid, lrs in grids(preset, method).items()
        ]

    def step_count(plan: list) -> int:
        # In parallel the further seeds wait for every sweep, then run as one step.
        further = (1 if parallel else len(plan) * (seeds - 1)) if seeds > 1 else 0
        return 1 + len(plan) + further + 1

    steps = _Steps(step_count(planned(budgets)), log)
    data_dir = str(steps.run(_data_label(config), functools.partial(_check_data, config, log)))
    if budgets:  # budgets larger than the training data are dropped (a note says which)
        budgets = fitting_budgets(budgets, _base_config(preset, names[0], data_dir, overrides), log)
    plan = planned(budgets)
    steps.total = step_count(plan)

    sweeps, finals, metrics, chosen = [], [], [], {}
    queued: list[RunConfig] = []  # further seeds waiting for the workers (parallel only)
    for method, grid, lrs, budget in plan:
        name = (f"{method}-{grid}" if grid else method) + budget_suffix(budget)
        sweep_config = SweepConfig(
            base=_base_config(preset, method, data_dir, overrides),
            lrs=lrs,
            train_fraction=1.0,
            train_limit=budget or preset.final_train_limit,
            epochs=preset.final_epochs,
            eval_limit=preset.held_out_limit,
            score_dev=True,
            first_rung=preset.first_rung,
            halving_factor=preset.halving_factor,
            output_dir=str(folder / "sweeps" / name),
            extend_edges=0 if grid else preset.extend_edges,
            workers=config.workers,
            workers_per_gpu=workers_per_gpu,
        )
        summary = steps.run(
            f"sweep {name}: learning rates {', '.join(f'{lr:g}' for lr in lrs)}; its best trial is the final run",
            functools.partial(run_sweep, sweep_config, log=log),
        )
        sweeps.append(sweep_config.folder)
        if not summary["best"]:
            raise PeftqaError(f"sweep {name} finished no trial")
        best = adopt_best_trial(summary, folder / "runs" / name, log)
        metrics.append(best)
        finals.append(folder / "runs" / name)
        chosen[name] = summary["best"]["params"]["lr"]
        for seed in range(best["seed"] + 1, best["seed"] + seeds):
            # Every seed is scored on the same dev questions (eval_seed is not the run's seed): paired.
            seed_run = seed_config(summary, seed, folder / "runs" / f"{name}-seed{seed}")
            if parallel:
                queued.append(seed_run)
            else:
                label = f"train {name} at lr {seed_run.learning_rate:g}, seed {seed_run.optimisation.seed}"
                metrics.append(steps.run(label, functools.partial(train, seed_run, resume=True, log=log)))
            finals.append(Path(str(seed_run.output_dir)))
    if queued:
        count = min(processes, len(queued))
        seeded = steps.run(
            f"further seeds: {len(queued)} run(s), {count} at a time",
            functools.partial(train_in_workers, queued, plan_slots(count, workers_per_gpu), folder / "logs", log),
        )
        metrics = _in_plan_order(finals, metrics, seeded)

    earlier = earlier_calls(folder, preset_name, names, finals, sweeps)  # the folder's other methods stay in its study
    if earlier["runs"]:
        log(f"the report also holds {len(earlier['runs'])} run(s) of earlier calls: {', '.join(earlier['methods'])}")
    every_run, every_sweep = [*earlier["runs"], *finals], [*earlier["sweeps"], *sweeps]
    # Across budgets, the report's comparisons are those of the largest budget; the budgets have their section.
    compared = [run for run in every_run if not budgets or run.name.split("-seed")[0].endswith(f"-q{budgets[-1]}")]
    write_report = functools.partial(
        build_report, compared, every_sweep, folder / "report", log=log, pdf=config.pdf,
        budget_runs=every_run if budgets else (),
    )  # fmt: skip
    report_md, report_html = steps.run("report", write_report)
    keys = ("method", "seed", "exact_match", "exact_match_ci", "f1", "f1_ci", "trainable_params", "steps")
    summary = {
        "preset": preset_name,
        "description": preset.description,
        "methods": [*earlier["methods"], *names],
        "runs": [str(p) for p in every_run],
        "sweeps": [str(p) for p in every_sweep],
        "learning_rates": {**earlier["learning_rates"], **chosen},
        **({"budgets": budget_record(budgets, names, chosen)} if budgets else {}),
        "seeds": seeds,
        "results": [
            *earlier["results"],
            *({k: m.get(k) for k in keys} | {"train_seconds": m.get("train_seconds")} for m in metrics),
        ],
        "step_seconds": steps.seconds,
        "total_seconds": round(time.perf_counter() - steps.began, 1),
        "report": str(report_html),
    }
    files.write_json_atomic(folder / STUDY_JSON, files.finite(summary))
    log("\n" + results_table(metrics))
    log(f"\nstudy done in {summary['total_seconds'] / 60:.1f} min.")
    log(f"report: {report_md}  and  {report_html} (one self-contained file: open it in a browser)")
    if config.pdf:
        log(f"printed: {report_html.with_name(REPORT_PDF)}")
    log(f"compare the models side by side: peftqa serve {' '.join(str(p) for p in finals)}")
    return summary


def _in_plan_order(finals: list[Path], adopted: list[dict[str, Any]], seeded: list[dict[str, Any]]) -> list[dict]:
    """The metrics of every final run in `finals`' order: the adopted best trials and the further seeds
    (those trained in workers come back in their queued order)."""
    adopted_left, seeded_left = iter(adopted), iter(seeded)
    return [next(seeded_left) if "-seed" in path.name else next(adopted_left) for path in finals]


def _data_label(config: StudyConfig) -> str:
    if config.train_file and config.dev_file:
        return f"data: {Path(config.train_file).name} and {Path(config.dev_file).name}"
    return "data: SQuAD v1.1" + (" and your files" if config.train_file or config.dev_file else "")


def _check_data(config: StudyConfig, log: Callable[[str], None]) -> Path:
    """The data directory (fetched when a SQuAD v1.1 split is still needed); your files read and checked
    now, so a broken one is one line before any sweep starts."""
    from peftqa.data import ensure_squad, load_squad, resolve_data_dir

    folder = resolve_data_dir(config.data_dir)
    if not (config.train_file and config.dev_file):
        folder = ensure_squad(config.data_dir)
    for role, source in (("train", config.train_file), ("dev", config.dev_file)):
        if source:
            examples = load_squad(source, role=role)
            unanswerable = sum(not e.answers for e in examples)
            log(f"{role}: {source}: {len(examples)} questions, {unanswerable} without an answer")
    return folder
