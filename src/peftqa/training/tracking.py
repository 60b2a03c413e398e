"""Live tracking of a run (`--report-to tensorboard|mlflow`): step losses and learning rates, the training rate,
each epoch's loss, EM and F1 with its interval, every held-out evaluation, the settings and the final figures.

Where it goes:
- tensorboard: event files in RUN_DIR/tensorboard, or TRACKING_DIR/<run name> with --tracking-dir (a
  sweep's trials in TRACKING_DIR/sweep-<sweep>/<trial>); `tensorboard --logdir` on a study folder or
  on TRACKING_DIR shows every run side by side.
- mlflow: MLFLOW_TRACKING_URI when set, else a local SQLite store, ./mlruns/mlflow.db (TRACKING_DIR/mlflow.db
  with --tracking-dir) with the artifacts beside it (`mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`);
  experiment MLFLOW_EXPERIMENT_NAME, default "peftqa". One MLflow run per peftqa run, resumed with it; a sweep's
  trials nested under the sweep's own run (`sweep_run`).

`RunTracking` is a consumer of train()'s hooks and reads only what the loop already has on the host: the
losses are read from the device every --log-every-steps steps (peftqa.training.meter) and sent after that read,
so tracking adds no device read to a step. RUN_DIR/tracking.json keeps the MLflow run's id and how far the
losses were sent, so a resumed run goes on in the same run, and TensorBoard hides what a killed process
logged past its checkpoint (purge_step).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.inference.run_files import check_fields, is_count, is_text
from peftqa.settings.run_config import RunConfig
from peftqa.training.early_stopping import scored_while_training
from peftqa.training.hooks import TrainHooks, TrainingState

TRACKING_JSON = "tracking.json"
TENSORBOARD_DIR = "tensorboard"
# report_to -> the package it needs (each is the extra of the same name: pip install 'peftqa[NAME]').
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
_MLFLOW_BATCH = 1000  # MLflow's most metrics in one log_batch call

Rows = list[tuple[int, dict[str, float]]]  # (step, {metric: value}) in step order


def require_tracker(config: RunConfig) -> None:
    """One line (PeftqaError) naming the extra when --report-to's package is not installed, or saying that
    MLflow's store does not answer: called before any data loads, so no run folder is left behind."""
    report_to = config.tracking.report_to
    package = _PACKAGES.get(report_to)
    if package is None:
        return
    try:
        importlib.import_module(package)
    except ImportError:
        raise PeftqaError(
            f"--report-to {report_to} needs the {package} package: pip install 'peftqa[{report_to}]'"
        ) from None
    if report_to == "mlflow":
        _mlflow_client(config)  # the experiment made or found now: the store answers


def tensorboard_folder(config: RunConfig, run_dir: Path) -> Path:
    return (
        Path(config.tracking.tracking_dir) / run_dir.name if config.tracking.tracking_dir else run_dir / TENSORBOARD_DIR
    )


def hyperparameters(config: RunConfig) -> dict[str, Any]:
    """The run's settings as flat scalars (method options as method_options.NAME; None as "none")."""
    values: dict[str, Any] = {}
    for name, value in config.to_dict().items():
        if isinstance(value, dict):
            values.update({f"{name}.{key}": _scalar(item) for key, item in value.items()})
        elif name != "tracking_parent":
            values[name] = _scalar(value)
    values["learning_rate"] = config.learning_rate  # the method's default when --lr was not given
    values["head_learning_rate"] = config.head_learning_rate
    return values


def _scalar(value: Any) -> Any:
    if value is None:
        return "none"
    return value if isinstance(value, bool | int | float | str) else str(value)


class _TensorBoard:
    def __init__(self, folder: Path, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # Flushed every few seconds, so a TensorBoard open on the folder follows the run as it trains.
        self.writer = SummaryWriter(str(folder), purge_step=purge_step, flush_secs=10)
        self.hparams: dict[str, Any] = {}

    def params(self, values: dict[str, Any], new: bool = True) -> None:
        self.hparams = values
        if not new:
            return  # a resumed run's folder already shows them
        lines = ["| setting | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in values.items())]
        self.writer.add_text("settings", "\n".join(lines))

    def metrics(self, rows: Rows) -> None:
        for step, values in rows:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def image(self, path: Path, step: int) -> None:
        from matplotlib.image import imread

        self.writer.add_image(path.stem, imread(path)[..., :3], step, dataformats="HWC")

    def final(self, values: dict[str, float], step: int) -> None:
        # The hyperparameters tab pairs the settings with these figures; "." keeps them in this run's folder.
        self.writer.add_hparams(self.hparams, values, run_name=".", global_step=step)

    def artifact(self, path: Path) -> None:
        pass  # the run directory holds it

    def close(self, status: str) -> None:
        self.writer.close()


def mlflow_uri(config: RunConfig) -> str:
    """MLFLOW_TRACKING_URI, else the local SQLite store (./mlruns, or --tracking-dir)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    folder = Path(config.tracking.tracking_dir or "mlruns").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _mlflow_client(config: RunConfig) -> tuple[Any, str]:
    """A client of the run's store and the experiment's id (created on first use)."""
    from mlflow import MlflowClient

    uri = mlflow_uri(config)
    # The store logs its table creation and SQLAlchemy warns about MLflow's own queries: not the user's.
    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.exceptions import MlflowException

    _check_reachable(uri)
    client = MlflowClient(tracking_uri=uri)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "peftqa")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return client, experiment.experiment_id
        # A local SQLite store keeps its artifacts beside it (MLflow's default would be ./mlruns wherever
        # the command runs); a server decides for itself.
        local = uri.startswith("sqlite:///")
        artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri() if local else None
        return client, client.create_experiment(name, artifact_location=artifacts)
    except MlflowException as error:
        message = " ".join(str(error).split())[:300]
        raise PeftqaError(f"--report-to mlflow: the tracking store refused: {message}") from None


def _check_reachable(uri: str) -> None:
    """An http(s) store that takes no connection is one line at once: MLflow's client would retry for
    minutes and then raise a traceback."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=10).close()
    except OSError as error:
        where = f"{parsed.scheme}://{parsed.hostname}:{port}"  # no password printed
        raise PeftqaError(
            f"--report-to mlflow: cannot reach the tracking store {where}: {error.strerror or error}"
        ) from None


class _MLflow:
    def __init__(self, config: RunConfig, name: str, run_id: str | None, tags: dict[str, str]) -> None:
        self.client, experiment = _mlflow_client(config)
        if run_id is None:
            if config.tracking.tracking_parent:
                tags = {**tags, "mlflow.parentRunId": config.tracking.tracking_parent}
            run_id = self.client.create_run(experiment, run_name=name, tags=tags).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id: str = run_id

    def params(self, values: dict[str, Any], new: bool = True) -> None:
        from mlflow.entities import Param

        if not new:
            return  # MLflow refuses to log a parameter twice, and a resumed run's are already there
        params = [Param(k, str(v)) for k, v in values.items()]
        for start in range(0, len(params), 100):  # MLflow's most params in one call
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def metrics(self, rows: Rows) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, step) for step, values in rows for name, value in values.items()]
        for start in range(0, len(metrics), _MLFLOW_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + _MLFLOW_BATCH])

    def image(self, path: Path, step: int) -> None:
        self.artifact(path)

    def final(self, values: dict[str, float], step: int) -> None:
        self.metrics([(step, values)])

    def artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def read_record(path: Path) -> dict[str, Any]:
    """tracking.json, checked: where a run (or a sweep) is tracked and how far its losses were sent."""
    fields = {
        "logged_step": (is_count, "a step number"),
        "tracking_uri": (is_text, "a string"),
        "mlflow_run_id": (is_text, "a string"),
    }
    return check_fields(files.read_json(path), path, {}, fields, "a peftqa tracking.json")


class RunTracking:
    """Sends one run's figures to its tracker as train()'s hooks report them (the main process only)."""

    def __init__(self, state: TrainingState, resume: bool) -> None:
        self.state, config, run_dir, progress = state, state.config, state.run_dir, state.progress
        self.record_path = run_dir / TRACKING_JSON
        before = read_record(self.record_path) if resume and self.record_path.is_file() else {}
        # Sent before the kill and still in the checkpoint: everything up to that step (losses are sent last).
        self.sent_losses = min(int(before.get("logged_step", 0)), progress.step)
        self.sent_validation = sum(1 for e in progress.validation if e["step"] <= self.sent_losses)
        self.sent_epochs = sum(1 for e in progress.history if e["step"] <= self.sent_losses)
        self.split = scored_while_training(state)[0]
        self.learning_rates = {progress.step + 1: state.scheduler.get_last_lr()[0]}  # step -> the rate it used
        self.sink: _TensorBoard | _MLflow
        if config.tracking.report_to == "tensorboard":
            folder = tensorboard_folder(config, run_dir)
            self.sink = _TensorBoard(folder, purge_step=progress.step + 1 if resume else None)
            self.record = {"report_to": "tensorboard", "folder": str(folder)}
        else:
            same_store = before.get("tracking_uri") == mlflow_uri(config)
            previous = before.get("mlflow_run_id") if same_store else None
            self.sink = _MLflow(config, run_dir.name, previous, {"peftqa.run_dir": str(run_dir.resolve())})
            self.record = {"report_to": "mlflow", "tracking_uri": mlflow_uri(config), "mlflow_run_id": self.sink.run_id}
        new = {k: v for k, v in before.items() if k != "logged_step"} != self.record
        self.sink.params(hyperparameters(config), new)
        # Written now, so a run killed before its first loss is sent still resumes in the same MLflow run.
        files.write_json_atomic(self.record_path, {**self.record, "logged_step": self.sent_losses})
        self._send()
        state.log(f"tracking: {self.where()}")

    def where(self) -> str:
        if isinstance(self.sink, _MLflow):
            return f"MLflow run {self.sink.run_id} at {self.record['tracking_uri']}"
        return f"TensorBoard event files in {self.record['folder']}"

    @property
    def hooks(self) -> TrainHooks:
        return TrainHooks(after_step=self._after_step, after_epoch=self._after_epoch, after_finish=self._after_finish)

    def _after_step(self, state: TrainingState) -> None:
        self.learning_rates[state.progress.step + 1] = state.scheduler.get_last_lr()[0]
        if len(state.progress.step_losses) > self.sent_losses or len(state.progress.validation) > self.sent_validation:
            self._send()

    def _after_epoch(self, entry: dict[str, Any]) -> None:
        self._send()

    def _send(self) -> None:
        """Everything the host holds that the tracker has not had: step losses (read by the meter), held-out
        evaluations and epoch scores, each at its own step."""
        progress, rows = self.state.progress, []
        for index in range(self.sent_losses, len(progress.step_losses)):
            step = index + 1
            row = {"train/loss": progress.step_losses[index]}
            if step in self.learning_rates:
                row["train/learning_rate"] = self.learning_rates.pop(step)
            rows.append((step, row))
        if len(progress.step_losses) > self.sent_losses:
            rates = progress.throughput()
            rows.append(
                (
                    len(progress.step_losses),
                    {
                        "train/features_per_second": rates["train_features_per_second"],
                        "train/tokens_per_second": rates["train_tokens_per_second"],
                    },
                )
            )
        for entry in progress.validation[self.sent_validation :]:
            rows.append((entry["step"], {f"validation/{k}": entry[k] for k in ("eval_loss", "exact_match", "f1")}))
        for entry in progress.history[self.sent_epochs :]:
            rows.append((entry["step"], self._epoch_row(entry)))
        if not rows:
            return
        self.sink.metrics(sorted(rows, key=lambda row: row[0]))
        self.sent_losses = len(progress.step_losses)
        self.sent_validation, self.sent_epochs = len(progress.validation), len(progress.history)
        files.write_json_atomic(self.record_path, {**self.record, "logged_step": self.sent_losses})

    def _epoch_row(self, entry: dict[str, Any]) -> dict[str, float]:
        row = {"epoch/epoch": entry["epoch"], "epoch/train_loss": entry["train_loss"]}
        row.update({f"epoch/{self.split}_{k}": entry[k] for k in ("eval_loss", "exact_match", "f1")})
        last = self.state.progress.last_eval
        if last is not None and last.intervals.get("f1") and entry is self.state.progress.history[-1]:
            row[f"epoch/{self.split}_f1_low"], row[f"epoch/{self.split}_f1_high"] = last.intervals["f1"]
        return row

    def _after_finish(self, metrics: dict[str, Any]) -> None:
        self._send()
        step = self.state.progress.step
        final = {f"final/{k}": float(metrics[k]) for k in ("exact_match", "f1", "eval_loss", "train_seconds")}
        final["final/f1_low"], final["final/f1_high"] = metrics["f1_ci"]
        final["final/train_features_per_second"] = metrics["train_features_per_second"]
        self.sink.final(final, step)
        from peftqa.inference import run_folder

        curve = self.state.run_dir / run_folder.LOSS_CURVE
        if curve.is_file():
            self.sink.image(curve, step)
        self.sink.artifact(self.state.run_dir / run_folder.METRICS_JSON)

    def close(self, status: str) -> None:
        self.sink.close(status)


@contextmanager
def tracked(state: TrainingState, resume: bool) -> Iterator[TrainHooks | None]:
    """The tracking hooks of a run (None without --report-to, and in every process but the main one);
    the tracker is closed as the run ends: finished, failed, or killed (Ctrl-C)."""
    if state.config.tracking.report_to == "none" or not state.parallel.main:
        yield None
        return
    tracking = RunTracking(state, resume)
    try:
        yield tracking.hooks
    except KeyboardInterrupt:
        tracking.close("KILLED")
        raise
    except BaseException:
        tracking.close("FAILED")
        raise
    tracking.close("FINISHED")


class SweepRun:
    """The MLflow run a sweep's trials are nested under (`run_id`), or nothing without --report-to mlflow."""

    def __init__(self, run: _MLflow | None = None) -> None:
        self.run = run

    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run is not None else None

    def record_best(self, summary: dict[str, Any]) -> None:
        """The best trial's scores and parameters (metrics: a grid extended later may change them)."""
        best = summary.get("best")
        if self.run is None or not best:
            return
        values = {"best/f1": best["f1"], "best/exact_match": best["exact_match"]}
        values.update({f"best/{name}": value for name, value in best["params"].items()})
        self.run.metrics([(0, values)])


@contextmanager
def sweep_run(base: RunConfig, folder: Path, params: dict[str, Any]) -> Iterator[SweepRun]:
    """With --report-to mlflow, the sweep's own MLflow run (its id kept in FOLDER/tracking.json, so a
    resumed sweep goes on in it), closed as the sweep ends; a SweepRun of nothing otherwise."""
    if base.tracking.report_to != "mlflow":
        yield SweepRun()
        return
    require_tracker(base)
    record_path = folder / TRACKING_JSON
    before = read_record(record_path) if record_path.is_file() else {}
    previous = before.get("mlflow_run_id") if before.get("tracking_uri") == mlflow_uri(base) else None
    run = _MLflow(base, f"sweep {folder.name}", previous, {"peftqa.sweep_dir": str(folder.resolve())})
    sweep_params = {f"sweep.{name}": _scalar(value) for name, value in params.items()}
    run.params({**hyperparameters(base), **sweep_params}, new=previous is None)
    files.write_json_atomic(record_path, {"tracking_uri": mlflow_uri(base), "mlflow_run_id": run.run_id})
    try:
        yield SweepRun(run)
    except KeyboardInterrupt:
        run.close("KILLED")
        raise
    except BaseException:
        run.close("FAILED")
        raise
    run.close("FINISHED")
