"""`peftqa study --preset quick|seed|full-data`: data -> a sweep per method -> each method trained at its
best learning rate -> evaluated -> one report. Every step re-uses what an earlier, interrupted study
finished (sweep trials and runs resume), so running the command again continues where it stopped.

    STUDY_DIR/
      sweeps/<method>[-<grid>]/   one Optuna sweep per method (and per comparison grid)
      runs/<method>[-<grid>]/     the final run of each method at its sweep's best learning rate
      report/                     report.md, report.html
      study.json                  the preset, the chosen learning rates, results and step timings
      logs/<run>.log              with --workers: each final run's own output (the console gets one line)

With `workers=K` every sweep runs K trials at a time (peftqa.sweep), and once all sweeps are done the
final runs run K at a time too, each in its own process (peftqa.workers).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder as runs
from peftqa.methods import get_method, methods_in_all
from peftqa.model.backbone import DEFAULT_MODEL
from peftqa.settings.run_config import PRECISIONS, PRESETS, REPORT_TO, RunConfig, setting
from peftqa.study.record import STUDY_JSON, earlier_calls, study_folders
from peftqa.sweep import SweepConfig, run_sweep

__all__ = ["STUDY_JSON", "study_folders"]  # the study's record, read where studies are opened

# StudyConfig fields that are RunConfig settings of every sweep trial and final run, when given.
_RUN_SETTINGS = ("model", "precision", "train_file", "dev_file", "validation_questions", "report_to", "tracking_dir")

# The original experiment's grid (its best value was its top edge).
ORIGINAL_LRS = [1e-5, 2e-5, 3e-5, 4e-5, 5e-5]


@dataclass(frozen=True)
class StudyPreset:
    """What one study preset trains; None limits mean all questions."""

    description: str
    methods: tuple[str, ...]  # default methods (--methods overrides)
    run: dict[str, Any]  # RunConfig settings shared by every sweep trial and final run
    sweep_train_limit: int | None  # questions per sweep trial (None: sweep_train_fraction of the file)
    sweep_train_fraction: float
    sweep_epochs: float
    sweep_eval_limit: int | None
    final_train_limit: int | None
    final_epochs: float
    final_eval_limit: int | None
    lr_grid: str = "default"  # which of each method's grids (MethodSpec.sweep_lrs) the sweeps search
    sweep_lrs: dict[str, list[float]] = field(default_factory=dict)  # per-method grids that replace lr_grid's
    extend_edges: int = 2  # our grids grow past an edge best this many times (comparison grids never do)
    compare_grids: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # extra named grids


STUDY_PRESETS: dict[str, StudyPreset] = {
    # `make demo`: <= 15 minutes on 2 CPU cores. Sweeps are tiny and only rank learning rates roughly;
    # their trials are ~20 optimiser steps, which favour high rates: hence each method's "quick" grid.
    "quick": StudyPreset(
        description="MiniLM-L6, 3 lrs x 300 questions per sweep, final runs on 2,000 questions, 1 epoch",
        # The floor (the QA head alone), two PEFT methods and the reference they are judged against
        # (--methods adds bitfit, dora, ...).
        methods=("head", "lora", "ia3", "full"),
        run=PRESETS["quick"],  # the study sets its own question limits and epochs below
        sweep_train_limit=300,
        sweep_train_fraction=0.1,
        sweep_epochs=1.0,
        sweep_eval_limit=200,
        final_train_limit=2000,
        final_epochs=1.0,
        final_eval_limit=500,
        lr_grid="quick",
        extend_edges=1,
    ),
    # The original experiment (DistilBERT, full data, 3 epochs, LoRA and (IA)3) with its grid and ours.
    "seed": StudyPreset(
        description="DistilBERT, full SQuAD, 3 epochs; sweeps on 10% with the original grid and with ours",
        methods=("head", "lora", "ia3"),  # the floor first: what the QA head alone learns
        run={"model": DEFAULT_MODEL, "dropout": None},  # the checkpoint's dropout, as the original run had
        sweep_train_limit=None,
        sweep_train_fraction=0.1,
        sweep_epochs=1.0,
        sweep_eval_limit=1000,
        final_train_limit=None,
        final_epochs=3.0,
        final_eval_limit=None,
        compare_grids={"original": {"lora": ORIGINAL_LRS, "ia3": ORIGINAL_LRS}},
    ),
    # Every method on MiniLM-L6 with full data (a GPU job).
    "full-data": StudyPreset(
        description="MiniLM-L6, every method, sweeps on 10%, final runs on full SQuAD, 2 epochs",
        methods=tuple(methods_in_all()),
        run={"model": "minilm-l6"},
        sweep_train_limit=None,
        sweep_train_fraction=0.1,
        sweep_epochs=1.0,
        sweep_eval_limit=1000,
        final_train_limit=None,
        final_epochs=2.0,
        final_eval_limit=None,
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


def _grids(preset: StudyPreset, method: str) -> dict[str, list[float]]:
    """Named learning-rate grids for a method: ours ("") first, then the preset's comparison grids."""
    grids = {"": preset.sweep_lrs.get(method) or get_method(method).lr_grid(preset.lr_grid)}
    grids.update({name: lrs[method] for name, lrs in preset.compare_grids.items() if method in lrs})
    return grids


def _base_config(preset: StudyPreset, method: str, data_dir: str, overrides: dict[str, Any]) -> RunConfig:
    return RunConfig.from_dict({**preset.run, **overrides, "method": method, "data_dir": data_dir})


@dataclass(frozen=True)
class StudyConfig:
    """What `peftqa study` runs: the preset and what replaces its choices (each field with help is a flag)."""

    preset: str = setting("quick", "the study to run (see the README)", choices=tuple(sorted(STUDY_PRESETS)))
    methods: str | None = setting(None, "comma-separated, e.g. lora,ia3,bitfit, or all (default per preset)")
    output_dir: str | None = setting(None, "study folder (default: studies/<preset>)")
    data_dir: str | None = setting(
        None, "SQuAD folder (default: PEFTQA_DATA_DIR or the user cache, fetched if missing)"
    )
    model: str | None = setting(None, "replace the preset's model")
    precision: str | None = setting(
        None, "every run's training arithmetic: auto, fp32 or bf16 (default: the preset's, auto)", choices=PRECISIONS
    )
    seeds: int = setting(1, "final runs per method with different seeds (report: mean and std)")
    workers: int | None = setting(
        None,
        "worker processes running sweep trials and final runs side by side (default 1): one GPU each while "
        "there are GPUs enough, else sharing; on a CPU the cores are split between them",
    )
    workers_per_gpu: int | None = setting(None, "workers sharing each GPU (without --workers: this many on every GPU)")
    train_file: str | None = setting(
        None, "your training questions (SQuAD JSON v1.1/v2.0 or JSON Lines; default: SQuAD v1.1 train)"
    )
    dev_file: str | None = setting(None, "your dev questions, in the same formats (default: SQuAD v1.1 dev)")
    validation_questions: int | None = setting(
        None, "held-out training questions (whole articles) the sweeps and the null threshold are chosen on"
    )
    pdf: bool = setting(False, "also print the report to report/report.pdf (needs Debian chromium and playwright)")
    report_to: str | None = setting(
        None,
        "track every sweep trial and final run live: tensorboard or mlflow (see `peftqa train --help`)",
        choices=REPORT_TO,
    )
    tracking_dir: str | None = setting(None, "where the tracker writes (see `peftqa train --help`)")
    overrides: dict[str, Any] = field(default_factory=dict)  # other RunConfig settings replacing the preset's

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

    preset_name, methods, seeds = config.preset, config.methods, config.seeds
    workers, workers_per_gpu = config.workers, config.workers_per_gpu
    preset = get_preset(preset_name)
    names = parse_methods(methods, preset.methods)
    folder = Path(config.output_dir or Path("studies") / preset_name)
    overrides = config.run_overrides()
    plan = [(method, grid, lrs) for method in names for grid, lrs in _grids(preset, method).items()]
    if seeds < 1:
        raise PeftqaError(f"--seeds must be at least 1, got {seeds}")
    if config.pdf:
        check_pdf_printer()  # now, not after hours of training
    processes = worker_count(workers, workers_per_gpu, len(visible_gpus()))
    parallel = processes > 1
    # In parallel the final runs wait for every sweep, then run as one step.
    steps = _Steps(1 + len(plan) + (1 if parallel else seeds * len(plan)) + 1, log)
    log(f"study '{preset_name}': {preset.description}; methods {', '.join(names)}; output {folder}")
    data_dir = str(steps.run(_data_label(config), functools.partial(_check_data, config, log)))

    sweeps, finals, metrics, chosen = [], [], [], {}
    queued: list[RunConfig] = []  # final runs waiting for the workers (parallel only)
    for method, grid, lrs in plan:
        name = f"{method}-{grid}" if grid else method
        sweep_config = SweepConfig(
            base=_base_config(preset, method, data_dir, overrides),
            lrs=lrs,
            train_fraction=preset.sweep_train_fraction,
            train_limit=preset.sweep_train_limit,
            epochs=preset.sweep_epochs,
            eval_limit=preset.sweep_eval_limit,
            output_dir=str(folder / "sweeps" / name),
            extend_edges=0 if grid else preset.extend_edges,
            workers=workers,
            workers_per_gpu=workers_per_gpu,
        )
        summary = steps.run(
            f"sweep {name}: learning rates {', '.join(f'{lr:g}' for lr in lrs)}",
            functools.partial(run_sweep, sweep_config, log=log),
        )
        sweeps.append(sweep_config.folder)
        if not summary["best"]:
            raise PeftqaError(f"sweep {name} finished no trial")
        base = _base_config(preset, method, data_dir, overrides)
        for extra_seed in range(seeds):
            # Every seed is scored on the same dev questions (eval_seed is not the run's seed): paired.
            run_dir = folder / "runs" / (f"{name}-seed{base.seed + extra_seed}" if extra_seed else name)
            final = RunConfig.from_dict(
                {
                    **base.to_dict(),
                    "lr": summary["best"]["params"]["lr"],
                    "seed": base.seed + extra_seed,
                    "train_limit": preset.final_train_limit,
                    "epochs": preset.final_epochs,
                    "eval_limit": preset.final_eval_limit,
                    "output_dir": str(run_dir),
                }
            )
            # train(resume=True) refuses a run folder trained with other settings (check_same_settings), so
            # a changed best learning rate never silently returns the run trained at the old one.
            label = f"train {name} at lr {final.lr:g}" + (f", seed {final.seed}" if seeds > 1 else "")
            if parallel:
                queued.append(final)
            else:
                metrics.append(steps.run(label, functools.partial(train, final, resume=True, log=log)))
            finals.append(run_dir)
        chosen[name] = summary["best"]["params"]["lr"]
    if parallel:
        count = min(processes, len(queued))
        metrics = steps.run(
            f"final runs: {len(queued)}, {count} at a time",
            functools.partial(_train_in_workers, queued, plan_slots(count, workers_per_gpu), folder / "logs", log),
        )

    earlier = earlier_calls(folder, preset_name, names, finals, sweeps)  # the folder's other methods stay in its study
    if earlier["runs"]:
        log(f"the report also holds {len(earlier['runs'])} run(s) of earlier calls: {', '.join(earlier['methods'])}")
    every_run, every_sweep = [*earlier["runs"], *finals], [*earlier["sweeps"], *sweeps]
    write_report = functools.partial(build_report, every_run, every_sweep, folder / "report", log=log, pdf=config.pdf)
    report_md, report_html = steps.run("report", write_report)
    keys = ("method", "seed", "exact_match", "exact_match_ci", "f1", "f1_ci", "trainable_params")
    summary = {
        "preset": preset_name,
        "description": preset.description,
        "methods": [*earlier["methods"], *names],
        "runs": [str(p) for p in every_run],
        "sweeps": [str(p) for p in every_sweep],
        "learning_rates": {**earlier["learning_rates"], **chosen},
        "seeds": seeds,
        "results": [*earlier["results"], *({k: m.get(k) for k in keys} for m in metrics)],
        "step_seconds": steps.seconds,
        "total_seconds": round(time.perf_counter() - steps.began, 1),
        "report": str(report_html),
    }
    files.write_json_atomic(folder / STUDY_JSON, summary)
    log("\n" + results_table(metrics))
    log(f"\nstudy done in {summary['total_seconds'] / 60:.1f} min.")
    log(f"report: {report_md}  and  {report_html} (one self-contained file: open it in a browser)")
    if config.pdf:
        log(f"printed: {report_html.with_name(REPORT_PDF)}")
    log(f"compare the models side by side: peftqa serve {' '.join(str(p) for p in finals)}")
    return summary


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


def _train_one(config: RunConfig, log: Callable[[str], None], say: Callable[[str], None]) -> dict[str, Any]:
    """One final run in a worker process: its lines go to its log, one line to the console."""
    from peftqa.training.loop import train

    began = time.perf_counter()
    metrics = train(config, resume=True, log=log)
    seconds = time.perf_counter() - began
    say(f"F1 {metrics['f1']:.2f} EM {metrics['exact_match']:.2f} in {seconds:.0f} s: {config.output_dir}")
    return metrics


def _train_in_workers(
    queued: list[RunConfig], slots: list, log_dir: Path, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """The final runs, len(slots) at a time; their metrics in the queued order."""
    from peftqa.model.backbone import load_tokenizer, resolve_model
    from peftqa.training.loop import train
    from peftqa.training.prepare import prepare_data
    from peftqa.workers import Job, run_jobs

    metrics: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for index, config in enumerate(queued):
        if (Path(str(config.output_dir)) / runs.METRICS_JSON).is_file():
            metrics[index] = train(config, resume=True, log=log)  # finished earlier: read back, not retrained
            continue
        # The model fetched and the data tokenised here, once, before the workers would all do it at
        # once (runs that share their data find it in the feature cache).
        prepare_data(config, load_tokenizer(resolve_model(config.model)), log)
        todo.append(index)
    jobs = [Job(Path(str(queued[i].output_dir)).name, _train_one, (queued[i],)) for i in todo]
    outcomes = run_jobs(jobs, slots, log_dir, say=log)
    failed = [f"{o.label}: {o.error}" for o in outcomes if not o.ok]
    if failed:
        raise PeftqaError(f"final run(s) failed ({'; '.join(failed)}); run the same command again to resume")
    metrics.update({index: outcome.value for index, outcome in zip(todo, outcomes, strict=True)})
    return [metrics[i] for i in range(len(queued))]
