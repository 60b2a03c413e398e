"""Live tracking: TensorBoard event files and an MLflow store read back hold what the run recorded in
metrics.json; a missing extra is one line and exit 2, before anything trains."""

from __future__ import annotations

import sys

import pytest

from peftqa import files
from peftqa.cli.commands import main
from peftqa.inference import run_folder
from peftqa.sweep import SweepConfig, run_sweep
from peftqa.training.loop import TrainHooks, train
from peftqa.training.tracking import TRACKING_JSON
from tests.helpers import Killed, tiny_run_config


def _quiet(_line: str) -> None:
    pass


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar the event files of `folder` hold, as TensorBoard shows them (purged steps hidden)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _images(folder) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0})
    events.Reload()
    return events.Tags()["images"]


def test_tensorboard_event_files_hold_the_step_losses_and_epoch_scores_of_metrics_json(
    tiny_bert_dir, squad_dir, tmp_path
):
    pytest.importorskip("tensorboard")
    run_dir = tmp_path / "run"
    config = tiny_run_config(tiny_bert_dir, squad_dir, run_dir, report_to="tensorboard", log_every_steps=2)
    metrics = train(config, log=_quiet)

    scalars = _scalars(run_dir / "tensorboard")
    losses = metrics["step_losses"]
    assert len(losses) == metrics["steps"] == 6
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, 7))
    assert [value for _, value in scalars["train/loss"]] == pytest.approx(losses, rel=1e-6)
    # Every step's learning rate, the one its optimiser step used: warm-up then linear decay to zero.
    # (no warm-up step in 6: int(0.1 * 6) = 0).
    rates = [value for _, value in scalars["train/learning_rate"]]
    assert rates == pytest.approx([1e-2 * (6 - step) / 6 for step in range(6)], rel=1e-6)
    history = metrics["history"]
    assert scalars["epoch/dev_f1"] == [(h["step"], pytest.approx(h["f1"], rel=1e-6)) for h in history]
    assert [v for _, v in scalars["epoch/dev_exact_match"]] == pytest.approx([h["exact_match"] for h in history])
    assert scalars["final/f1"] == [(6, pytest.approx(metrics["f1"], rel=1e-6))]
    assert "train/features_per_second" in scalars and "epoch/dev_f1_low" in scalars
    assert "loss_curve" in _images(run_dir / "tensorboard")
    assert files.read_json(run_dir / TRACKING_JSON)["logged_step"] == 6


def test_tensorboard_of_a_resumed_run_shows_each_step_once(tiny_bert_dir, squad_dir, tmp_path):
    pytest.importorskip("tensorboard")
    run_dir = tmp_path / "run"
    tb = str(tmp_path / "tb")
    config = tiny_run_config(
        tiny_bert_dir, squad_dir, run_dir, epochs=3, report_to="tensorboard", tracking_dir=tb, log_every_steps=1
    )

    def die_in_step_6(state):
        # 3 steps an epoch, checkpoints every 2 steps and at epoch ends: the process dies having sent
        # step 5's loss, and the run resumes from step 4's checkpoint, so step 5 is trained (and sent) again.
        if state.progress.step == 6:
            raise Killed

    with pytest.raises(Killed):
        train(config, log=_quiet, hooks=TrainHooks(after_step=die_in_step_6))
    metrics = train(config, resume=True, log=_quiet)

    scalars = _scalars(tmp_path / "tb" / "run")
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, 10))
    assert [value for _, value in scalars["train/loss"]] == pytest.approx(metrics["step_losses"], rel=1e-6)
    assert [step for step, _ in scalars["epoch/dev_f1"]] == [3, 6, 9]


def test_mlflow_store_holds_the_run_its_settings_metrics_and_loss_curve(
    tiny_bert_dir, squad_dir, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "mlruns"
    run_dir = tmp_path / "run"
    config = tiny_run_config(tiny_bert_dir, squad_dir, run_dir, report_to="mlflow", tracking_dir=str(store))
    metrics = train(config, log=_quiet)

    record = files.read_json(run_dir / TRACKING_JSON)
    assert record["tracking_uri"] == f"sqlite:///{store.resolve() / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=record["tracking_uri"])
    run = client.get_run(record["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["method"] == "lora" and float(run.data.params["learning_rate"]) == 1e-2
    assert run.data.metrics["final/f1"] == pytest.approx(metrics["f1"])
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [
        (step, pytest.approx(loss)) for step, loss in enumerate(metrics["step_losses"], 1)
    ]
    epoch_f1 = client.get_metric_history(run.info.run_id, "epoch/dev_f1")
    assert sorted((m.step, m.value) for m in epoch_f1) == [
        (h["step"], pytest.approx(h["f1"])) for h in metrics["history"]
    ]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {run_folder.LOSS_CURVE, run_folder.METRICS_JSON}


def test_mlflow_sweep_trials_are_nested_under_the_sweeps_run(tiny_bert_dir, squad_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory (./mlruns)
    base = tiny_run_config(tiny_bert_dir, squad_dir, None, batch_size=4, report_to="mlflow")
    folder = str(tmp_path / "s")
    sweep = SweepConfig(base=base, lrs=[1e-2], train_fraction=1.0, epochs=1, eval_limit=None, output_dir=folder)
    summary = run_sweep(sweep, log=_quiet)

    client = MlflowClient(tracking_uri=uri)
    parent_id = files.read_json(tmp_path / "s" / TRACKING_JSON)["mlflow_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["best/f1"] == pytest.approx(summary["best"]["f1"])
    trial_dir = summary["best"]["run_dir"]
    trial = client.get_run(files.read_json(f"{trial_dir}/{TRACKING_JSON}")["mlflow_run_id"])
    assert trial.data.tags["mlflow.parentRunId"] == parent_id
    assert trial.data.metrics["final/f1"] == pytest.approx(summary["best"]["f1"])
    assert not (tmp_path / "mlruns").exists() and (tmp_path / "artifacts").is_dir()


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow"])
def test_a_missing_tracker_is_one_line_naming_the_extra_before_training(
    tracker, tiny_bert_dir, squad_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, tracker, None)  # `import tracker` now raises ImportError
    run_dir = tmp_path / "run"
    argv = ["--model", str(tiny_bert_dir), "--data-dir", str(squad_dir), "--output-dir", str(run_dir)]
    for command in (["train"], ["sweep", "--lrs", "1e-2"]):
        code = main([*command, *argv, "--report-to", tracker])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1
        expected = f"--report-to {tracker} needs the {tracker} package: pip install 'peftqa[{tracker}]'"
        assert lines[0] == f"peftqa: error: {expected}"
        assert not run_dir.exists()


def test_an_unknown_tracker_is_one_line(capsys):
    assert main(["train", "--report-to", "wandb"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--report-to: must be one of none, tensorboard, mlflow" in lines[0]


@pytest.mark.parametrize("content", ["[]", '{"logged_step": "many"}', '{"mlflow_run_id": 5}', "{"])
def test_a_damaged_tracking_json_is_one_line(tmp_path, content):
    from peftqa.errors import PeftqaError
    from peftqa.training.tracking import TRACKING_JSON, read_record

    (tmp_path / TRACKING_JSON).write_text(content)
    with pytest.raises(PeftqaError, match="tracking.json") as error:
        read_record(tmp_path / TRACKING_JSON)
    assert len(str(error.value).splitlines()) == 1
