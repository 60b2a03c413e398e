"""Several sweep workers on one Optuna study: K processes on the local SQLite file, separate commands
on a real, throw-away PostgreSQL server, a worker killed mid-trial, and the pieces underneath
(slots, the folder lock, the claim rule, the storage URL)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest

from peftqa.cli.commands import main
from peftqa.errors import PeftqaError
from peftqa.sweep import SweepConfig, pick_best, run_sweep
from peftqa.sweep import storage as sweep_storage
from peftqa.sweep.storage import folder_lock
from peftqa.sweep.sweep_config import grid_point, trial_dir
from peftqa.sweep.trials import earlier_claim, plan_trials, prepare_resume
from peftqa.workers import Job, plan_slots, run_jobs
from tests.helpers import tiny_run_config

LRS = [1e-3, 3e-3, 1e-2, 3e-2]  # a 4-point grid


def _config(model_dir, squad_dir, out, **overrides) -> SweepConfig:
    base = tiny_run_config(model_dir, squad_dir, None, batch_size=4, eval_batch_size=8, method_options={"lora_r": 2})
    values = dict(base=base, lrs=LRS, train_fraction=1.0, epochs=1, eval_limit=None, output_dir=str(out))
    values.update(overrides)
    return SweepConfig(**values)


def _cli_args(model_dir, squad_dir, out, lrs=LRS) -> list[str]:
    """The same sweep as _config, as a `peftqa sweep` command."""
    return [
        *("sweep", "--method", "lora", "--model", str(model_dir), "--data-dir", str(squad_dir)),
        *("--lrs", ",".join(map(str, lrs)), "--lora-r", "2", "--train-fraction", "1.0", "--epochs", "1"),
        *("--max-length", "128", "--doc-stride", "32", "--batch-size", "4", "--eval-batch-size", "8"),
        *("--validation-questions", "3", "--checkpoint-every-steps", "2", "--output-dir", str(out)),
    ]


def _complete(summary: dict) -> dict[float, float]:
    """lr -> F1 of the complete trials; fails if a point completed twice."""
    rows = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    lrs = [t["params"]["lr"] for t in rows]
    assert len(lrs) == len(set(lrs)), f"a grid point ran twice: {sorted(lrs)}"
    return {t["params"]["lr"]: t["f1"] for t in rows}


@pytest.fixture(scope="module")
def single_worker(tiny_bert_dir, squad_dir, tmp_path_factory) -> dict:
    """The 4-point sweep run by one worker with one thread, as every worker below has."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:  # the feature cache the autouse fixture sets, not yet set here
            patch.setenv("PEFTQA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "peftqa-cache"))
            return run_sweep(_config(tiny_bert_dir, squad_dir, tmp_path_factory.mktemp("single")), log=lambda _: None)
    finally:
        torch.set_num_threads(threads)


def _one_thread_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


# ------------------------------------------------------------------ local: K processes, SQLite


def test_two_workers_on_the_sqlite_file_run_each_point_once(tiny_bert_dir, squad_dir, tmp_path, single_worker, capfd):
    lines: list[str] = []
    out = tmp_path / "two"
    summary = run_sweep(_config(tiny_bert_dir, squad_dir, out, workers=2), log=lines.append)

    scores = _complete(summary)
    assert sorted(scores) == LRS  # every point trained, each once
    complete = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    # When both workers read the study and ask at nearly the same moment (finishing trials together), the
    # later trial draws a point already taken and gives way at once (duplicate_of) without training: an
    # extra FAIL row, never a point trained twice.
    assert len(complete) == 4
    assert all(t["duplicate_of"] is not None for t in summary["trials"] if t["state"] != "COMPLETE")
    assert scores == _complete(single_worker)
    assert summary["best"]["params"] == single_worker["best"]["params"]
    assert all(Path(t["run_dir"], "metrics.json").is_file() for t in complete)
    # Readable progress: one line per worker started and per finished trial, no bars; the rest in the logs.
    started = [line for line in lines if "] started: pid" in line]
    assert len(started) == 2 and all("1 CPU thread" in line for line in started)
    assert sorted((out / "workers").iterdir()) == [out / "workers" / "worker-1.log", out / "workers" / "worker-2.log"]
    console = capfd.readouterr()
    assert sum("): held-out F1 " in line for line in console.out.splitlines()) == 4, console.out
    assert "it/s" not in console.out + console.err and "step/s" not in console.out + console.err  # no bars
    # Every trial was trained by one of the two worker processes started (a trial that gave way never
    # started its work: no worker), none by this process.
    pids = {line.split("started: pid ")[1].split(",")[0] for line in started}
    workers = {t["worker"] for t in complete}
    assert workers and {w.split(":")[0] for w in workers} == {socket.gethostname()}
    assert {w.split(":")[1] for w in workers} <= pids and str(os.getpid()) not in pids


def test_worker_lines_reach_the_console_and_failures_come_back(tmp_path, capfd):
    outcomes = run_jobs(
        [Job("ok job", _echo, ("hello",)), Job("bad job", _fail, ())],
        plan_slots(2, gpus=[], cores=2),
        tmp_path,
        say=lambda line: None,
    )
    assert outcomes[0].ok and outcomes[0].value == "HELLO"
    assert not outcomes[1].ok and outcomes[1].error == "no such thing"
    console = capfd.readouterr().out
    assert "[ok job] said hello" in console and "quietly" not in console
    assert "quietly hello" in (tmp_path / "ok-job.log").read_text()


def _echo(text: str, log, say) -> str:
    log(f"quietly {text}")
    say(f"said {text}")
    return text.upper()


def _fail(log, say) -> None:
    raise PeftqaError("no such thing")


def test_slots_spread_workers_over_gpus_and_split_cpu_threads():
    assert [(s.gpu, s.threads) for s in plan_slots(4, gpus=["0", "1"], cores=16)] == [
        ("0", 4),
        ("0", 4),
        ("1", 4),
        ("1", 4),
    ]
    assert [s.gpu for s in plan_slots(2, gpus=["0", "1", "2", "3"], cores=8)] == ["0", "1"]
    assert [s.gpu for s in plan_slots(None, workers_per_gpu=3, gpus=["4", "5"], cores=6)] == ["4"] * 3 + ["5"] * 3
    assert [(s.gpu, s.threads) for s in plan_slots(2, gpus=[], cores=2)] == [(None, 1), (None, 1)]
    assert [s.threads for s in plan_slots(3, gpus=[], cores=2)] == [1, 1, 1]
    with pytest.raises(PeftqaError, match="--workers must be at least 1"):
        plan_slots(0, gpus=[], cores=2)
    assert main(["sweep", "--workers", "0"]) == 2
    assert main(["study", "--workers-per-gpu", "0"]) == 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the tests' own ask(), outside optimize
def test_a_running_trial_is_failed_at_once_only_when_no_other_command_uses_the_folder(tmp_path):
    from optuna.trial import TrialState

    from peftqa.settings.run_config import RunConfig

    config = SweepConfig(base=RunConfig.flat(method="lora"), lrs=[1e-3], output_dir=str(tmp_path))
    study = sweep_storage.open_study(config)
    trial = study.ask()
    trial.suggest_float("lr", 1e-3, 1e-3, log=True)
    with folder_lock(config) as first:  # e.g. a live `peftqa sweep` on this folder
        with folder_lock(config) as second:
            assert first and not second
            assert prepare_resume(study, config, second) == 1
            assert study.get_trials()[0].state == TrialState.RUNNING  # may be alive: heartbeats decide
    with folder_lock(config) as alone:
        assert alone
        prepare_resume(study, config, alone)
    assert study.get_trials()[0].state == TrialState.FAIL
    assert study.get_trials()[1].state == TrialState.WAITING  # its point queued again


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_gives_way_to_an_earlier_trial_of_its_point(tmp_path):
    from peftqa.settings.run_config import RunConfig

    config = SweepConfig(base=RunConfig.flat(method="lora"), lrs=[1e-3, 1e-2], output_dir=str(tmp_path))
    study = sweep_storage.open_study(config)
    first, second = study.ask(), study.ask()
    study.enqueue_trial({"lr": 1e-2})
    first.suggest_float("lr", 1e-3, 1e-2, log=True)  # grid point 0: trial numbers map to grid ids
    point = grid_point(first.params)
    assert earlier_claim(study, first.number, point) is None
    assert earlier_claim(study, 5, point) == first.number
    # `second` has no parameters yet: a later trial waits for them, then goes ahead after `patience_s`.
    began = time.monotonic()
    assert earlier_claim(study, 5, (("lr", 5e-3),), patience_s=0.5) is None
    assert time.monotonic() - began >= 0.5
    second.suggest_float("lr", 1e-3, 1e-2, log=True)  # the other grid point (1e-2 is also queued, as trial 2)
    assert earlier_claim(study, 9, grid_point(second.params)) == second.number
    assert earlier_claim(study, second.number, grid_point(second.params)) is None
    assert pick_best(
        [
            {"state": "COMPLETE", "f1": 1.0, "exact_match": 0.0, "params": {"lr": 3e-3}},
            {"state": "COMPLETE", "f1": 1.0, "exact_match": 0.0, "params": {"lr": 1e-3}},
        ]
    )["params"] == {"lr": 1e-3}, "ties go to the smaller value, whatever order the workers finished in"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_worker_waits_while_another_s_new_trial_has_not_named_its_point_yet(tmp_path):
    from optuna.trial import TrialState

    from peftqa.settings.run_config import RunConfig

    config = SweepConfig(base=RunConfig.flat(method="lora"), lrs=[1e-3, 1e-2], output_dir=str(tmp_path))
    study = sweep_storage.open_study(config)
    done = study.ask()
    done.suggest_float("lr", 1e-3, 1e-2, log=True)
    study.tell(done, 1.0)
    assert plan_trials(study, config).runnable  # one point left, nobody on it
    starting = study.ask()  # another worker's trial, before its objective suggests the parameters
    assert starting.params == {} and study.get_trials()[1].state == TrialState.RUNNING
    plan = plan_trials(study, config)
    # Asking now would draw the same last point (and give way): wait for that trial instead.
    assert plan.todo == 1 and not plan.runnable and plan.waiting_on == [starting.number]
    starting.suggest_float("lr", 1e-3, 1e-2, log=True)
    assert not plan_trials(study, config).runnable


def test_postgres_storage_needs_its_extra(tmp_path, monkeypatch):
    from peftqa.settings.run_config import RunConfig

    config = SweepConfig(base=RunConfig(), storage="postgresql://me:secret@db.example/sweeps", output_dir=str(tmp_path))
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    with pytest.raises(PeftqaError, match=r"peftqa\[postgres\]") as error:
        sweep_storage.storage_url(config)
    assert "secret" not in str(error.value)
    assert main(["sweep", "--storage", "postgresql://db.example/sweeps", "--output-dir", str(tmp_path)]) == 2
    monkeypatch.delitem(sys.modules, "psycopg")
    pytest.importorskip("psycopg")
    assert sweep_storage.storage_url(config) == "postgresql+psycopg://me:secret@db.example/sweeps"
    monkeypatch.setenv(sweep_storage.GRACE_ENV, "soon")
    with pytest.raises(PeftqaError, match="PEFTQA_SWEEP_GRACE_S"):
        sweep_storage.grace_seconds()


# ------------------------------------------------------------------ a real PostgreSQL server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server (Debian's `postgresql`, `make postgres-deps`) on a free port of
    127.0.0.1, in a temporary folder; yields a function that creates an empty database and returns
    its URL. Run as `nobody` when the tests run as root (PostgreSQL refuses root; CI is root)."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is missing: pip install 'peftqa[postgres]'")
    import psycopg

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        pytest.skip("PostgreSQL is not installed (make postgres-deps: apt-get install postgresql)")
    bindir = found[-1].parent
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="peftqa-pg-"))  # in /tmp: nobody cannot enter pytest's 0700 folders
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = folder / "data", _free_port()
    try:
        subprocess.run(
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "peftqa",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-h 127.0.0.1 -p {port} -k {folder} -F -c max_connections=50"
        started = subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60"]
            + ["-o", options, "start"],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert started.returncode == 0, (folder / "log").read_text() if (folder / "log").exists() else started.stderr
        server = f"postgresql://peftqa@127.0.0.1:{port}"

        def new_database(name: str) -> str:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{name}"')
            return f"{server}/{name}"

        yield new_database
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


def _load(url: str):
    import optuna

    names = optuna.get_all_study_names(storage=url.replace("postgresql://", "postgresql+psycopg://"))
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=url.replace("postgresql://", "postgresql+psycopg://"))


def test_two_machines_share_one_postgres_study(postgres, tiny_bert_dir, squad_dir, tmp_path, single_worker):
    url = postgres("two_workers")
    # Two commands, as on two machines: each its own folder (trial folders are collected after).
    commands = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "peftqa",
                *_cli_args(tiny_bert_dir, squad_dir, tmp_path / f"m{i}"),
                "--storage",
                url,
            ],
            env=_one_thread_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (1, 2)
    ]
    outputs = [command.communicate(timeout=300)[0] for command in commands]
    assert [c.returncode for c in commands] == [0, 0], outputs

    study = _load(url)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["lr"] for t in complete) == LRS  # 4 trials, none twice
    assert {t.params["lr"]: t.value for t in complete} == _complete(single_worker)
    finished_by = [sum(f"trial {t.number} (" in out for out in outputs) for t in complete]
    assert finished_by == [1, 1, 1, 1], outputs  # each finished trial was reported by exactly one command
    best = max(complete, key=lambda t: (t.value, t.user_attrs["exact_match"], -t.params["lr"]))
    assert best.params == single_worker["best"]["params"]


def test_a_killed_worker_s_point_runs_again_after_the_grace_period(postgres, tiny_bert_dir, squad_dir, tmp_path):
    url = postgres("killed_worker")
    args = [sys.executable, "-m", "peftqa", *_cli_args(tiny_bert_dir, squad_dir, tmp_path, LRS[:2]), "--storage", url]
    grace = 6
    env = _one_thread_env(**{sweep_storage.GRACE_ENV: str(grace)})  # a heartbeat every 2 s
    doomed = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    other = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert doomed.stdout is not None
    seen = []
    for line in doomed.stdout:
        seen.append(line)
        if line.startswith("trial ") and ": lr=" in line:  # its trial has started: the training is loading
            break
    doomed.send_signal(signal.SIGKILL)
    killed_at = datetime.now()
    doomed.wait(timeout=30)
    number = int(seen[-1].split()[1].rstrip(":"))
    killed = next(t for t in _load(url).trials if t.number == number)
    assert killed.state.name == "RUNNING", seen
    point = {"lr": killed.params["lr"]}
    assert not (trial_dir(tmp_path, point) / "metrics.json").exists()  # killed mid-trial

    out, err = other.communicate(timeout=300)
    assert other.returncode == 0, out + err
    trials = _load(url).trials
    # The killed trial was failed by the heartbeat check and its point run once more; the other
    # worker never asked for a trial while the dead one held the last point (that would have made
    # the grid sampler draw a point again: a duplicate, FAIL).
    assert [t.state.name for t in trials].count("FAIL") == 1 and killed.number in {
        t.number for t in trials if t.state.name == "FAIL"
    }
    assert len(trials) == 3, [(t.number, t.state.name, t.params) for t in trials]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["lr"] for t in complete) == LRS[:2]
    again = next(t for t in complete if t.params == point)
    assert again.datetime_start is not None
    # Not before the grace period (the last heartbeat was at most 2 s before the kill).
    assert (again.datetime_start - killed_at).total_seconds() >= grace - 2.5, out
    assert (trial_dir(tmp_path, point) / "metrics.json").is_file()
