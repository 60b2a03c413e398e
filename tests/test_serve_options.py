"""serve.options: `peftqa serve`'s flags checked (ServeOptions), the runs it loads with the torch threads
divided between them, and the server it starts; through the command, as a user runs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from peftqa.cli.commands import main
from peftqa.errors import PeftqaError
from peftqa.serve.options import ServeOptions, load_for_serving
from tests.helpers import runs_of_every_method


@pytest.fixture(scope="module")
def run_dirs(tiny_bert_dir, squad_dir, tmp_path_factory) -> dict[str, Path]:
    return runs_of_every_method(tiny_bert_dir, squad_dir, tmp_path_factory)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """`peftqa serve` divides the process's torch threads between its models: undo it after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("flags", "mode"), [({}, "merged"), ({"shared_base": True}, "shared"), ({"fast": True}, "fast")]
)
def test_the_flags_name_one_mode(monkeypatch, flags, mode):
    import peftqa.hardware

    monkeypatch.setattr(peftqa.hardware, "cpu_has_bf16", lambda: True)
    assert ServeOptions(**flags).mode == mode


@pytest.mark.parametrize(
    "flags",
    [{"backend": "onnx", "fast": True}, {"backend": "onnx", "shared_base": True}, {"fast": True, "shared_base": True}],
)
def test_options_that_do_not_go_together_are_refused_before_anything_loads(flags):
    with pytest.raises(PeftqaError):
        ServeOptions(run_dirs=("never-read",), **flags)


def test_each_loaded_model_gets_its_share_of_the_cores(run_dirs):
    models = load_for_serving(ServeOptions(run_dirs=(str(run_dirs["lora"]), str(run_dirs["ia3"]))), print)
    assert [model.name for model in models] == ["lora", "ia3"]
    # The cores this process may use (its affinity mask), not the machine's.
    assert torch.get_num_threads() == max(1, len(os.sched_getaffinity(0)) // 2)


def test_serve_with_no_runs_names_the_command_that_trains_them(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "make demo" in err and "peftqa train" in err and "Traceback" not in err
    assert "in runs/, backend/ and studies/quick/runs/:" in err


def test_serve_starts_waitress_with_the_runs_that_load(capsys, run_dirs, tmp_path, monkeypatch):
    import waitress

    started = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kwargs: started.update(app=app, **kwargs))
    assert main(["serve", str(run_dirs["lora"]), str(tmp_path / "gone"), "--port", "5123"]) == 0
    assert started["port"] == 5123 and started["host"] == "127.0.0.1"
    assert started["app"].test_client().get("/healthz").get_json()["models"] == 1
    assert "skipped gone" in capsys.readouterr().err


def test_serve_debug_uses_the_flask_development_server(run_dirs, monkeypatch):
    from flask import Flask

    started = {}
    monkeypatch.setattr(Flask, "run", lambda app, **kwargs: started.update(kwargs))
    assert main(["serve", str(run_dirs["ia3"]), "--debug"]) == 0
    assert started["debug"] is True


@pytest.mark.parametrize(
    ("flags", "bf16", "merged"), [([], False, True), (["--fast"], True, True), (["--shared-base"], False, False)]
)
def test_serve_modes(run_dirs, monkeypatch, flags, bf16, merged):
    import waitress

    import peftqa.hardware

    monkeypatch.setattr(peftqa.hardware, "cpu_has_bf16", lambda: True)
    started = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kwargs: started.update(app=app))
    assert main(["serve", str(run_dirs["lora"]), *flags]) == 0
    (served,) = started["app"].extensions["peftqa_models"]
    assert served.bf16 is bf16 and hasattr(served.run.model, "merge_and_unload") is not merged


def test_serve_onnx_backend_serves_onnx_exports(run_dirs, monkeypatch, tmp_path, capsys):
    import waitress

    from peftqa.export import export_run

    export_run(run_dirs["ia3"], tmp_path / "onnx", "onnx", log=lambda line: None)
    started = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kwargs: started.update(app=app))
    assert main(["serve", "--backend", "onnx", str(tmp_path / "onnx")]) == 0
    (served,) = started["app"].extensions["peftqa_models"]
    assert served.backend == "onnxruntime fp32"
    # One model: every core this process may use (its affinity mask, e.g. `taskset -c 0`), not the machine's.
    assert served.run.model.session.get_session_options().intra_op_num_threads == len(os.sched_getaffinity(0))


def test_serve_fast_is_refused_where_bf16_is_emulated(run_dirs, monkeypatch, capsys):
    import peftqa.hardware

    monkeypatch.setattr(peftqa.hardware, "cpu_has_bf16", lambda: False)
    assert main(["serve", str(run_dirs["lora"]), "--fast"]) == 2
    err = capsys.readouterr().err
    assert "bf16 units" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--backend", "onnx", "--fast", "x"], "torch backend"),
        (["--fast", "--shared-base", "x"], "cannot go with --shared-base"),
    ],
)
def test_serve_refuses_flags_that_do_not_go_together(capsys, flags, fragment):
    assert main(["serve", *flags]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_serve_on_a_port_in_use_says_so_in_one_line(capsys, run_dirs):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(run_dirs["lora"]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_python_app_py_is_peftqa_serve(tmp_path):
    import subprocess
    import sys

    app_py = Path(__file__).resolve().parents[1] / "app.py"
    completed = subprocess.run([sys.executable, str(app_py)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and "make demo" in completed.stderr and "Traceback" not in completed.stderr
