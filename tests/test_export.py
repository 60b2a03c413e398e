"""`peftqa export`: merged Hugging Face folders and ONNX models that answer as the run does, read back
with plain transformers / onnxruntime (no peftqa code), and the refusals of the command."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from peftqa import files
from peftqa.cli.commands import main
from peftqa.errors import PeftqaError
from peftqa.export import export_run
from peftqa.export.verify import largest_difference, logits, probe_batch
from peftqa.inference import run_folder
from peftqa.inference.evaluate import ask
from peftqa.inference.rescore import evaluate_run
from peftqa.inference.run_folder import EXPORT_JSON, ONNX_FILE
from peftqa.methods import get_method, method_names
from peftqa.settings.groups import ScoringSettings
from tests.helpers import train_tiny_runs

# Every registered method that merges: each must give a plain transformers folder.
METHODS = tuple(m for m in method_names() if get_method(m).merges)
# Tracing sees the merged model, a plain transformers one whatever the method: an adapter method and a
# full run cover it (on both architectures). Methods that cannot merge are traced with their own
# modules: a sequential and a parallel bottleneck adapter (the latter passes a tensor between layers).
ONNX_METHODS = ("lora", "full", "houlsby", "parallel")
WINDOWS = ScoringSettings(max_length=128, doc_stride=32)  # the windows tiny_run_config trains with
CONTEXT = "Pride and Prejudice was written by Jane Austen and published in 1813 by Thomas Egerton."
QUESTION = "Who wrote Pride and Prejudice?"


@pytest.fixture(scope="module")
def tiny_runs(tiny_model_dir, squad_dir, tmp_path_factory) -> dict[str, Path]:
    """A tiny run of every method exported here, on tiny DistilBERT and on tiny BERT (tiny_model_dir's two params)."""
    methods = sorted({*METHODS, *ONNX_METHODS})
    return train_tiny_runs(methods, tiny_model_dir, squad_dir, tmp_path_factory.mktemp("export-runs"))


@pytest.fixture(scope="module")
def bert_runs(tiny_bert_dir, squad_dir, tmp_path_factory) -> dict[str, Path]:
    """LoRA and (IA)3 on tiny BERT only: enough for the command's refusals."""
    return train_tiny_runs(("lora", "ia3"), tiny_bert_dir, squad_dir, tmp_path_factory.mktemp("export-bert-runs"))


def _silent(line: str) -> None:
    pass


def _plain_logits(model, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Start/end logits from a plain transformers model, with only the inputs its forward names."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    with torch.no_grad():
        output = model(**{name: value for name, value in batch.items() if name in accepted})
    return output.start_logits.numpy(), output.end_logits.numpy()


@pytest.mark.parametrize("method", METHODS)
def test_hf_export_loads_with_plain_transformers_and_gives_the_runs_logits(tiny_runs, method, tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    out = tmp_path / "hf"
    info = export_run(tiny_runs[method], out, "hf", log=_silent)
    loaded = run_folder.load_run(tiny_runs[method])
    batch = probe_batch(loaded.tokenizer, WINDOWS)
    reference = logits(loaded.model, batch)  # the run as peftqa loads it: adapter unmerged
    model = AutoModelForQuestionAnswering.from_pretrained(out).eval()
    assert largest_difference(_plain_logits(model, batch), reference, batch["attention_mask"].numpy()) <= 1e-5
    # Nothing of peft is left, and the folder is a standard one.
    assert not any("lora_" in name or "ia3_" in name or "base_layer" in name for name, _ in model.named_parameters())
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert AutoTokenizer.from_pretrained(out).is_fast
    recorded = json.loads((out / EXPORT_JSON).read_text())
    assert recorded["scoring"] == {"max_length": 128, "doc_stride": 32, "n_best": 20, "max_answer_tokens": 30}
    assert recorded["source_run"] == method and recorded["method"] == method == info["method"]
    card = (out / "README.md").read_text()
    assert f"`{method}`" in card and "dev F1" in card and f"{loaded.metrics['f1']:.2f}" in card
    assert "$" not in card and "max_length=128," in card  # every placeholder of the template filled
    assert str(tiny_runs[method].parent) not in card  # no path of this machine in a card meant to ship


def _best_span(start: np.ndarray, end: np.ndarray, offsets: list, context_mask: list[bool], longest: int = 30):
    """The highest-scoring valid span (start <= end, both in the context, at most `longest` tokens)."""
    best, where = -np.inf, None
    for i in range(len(start)):
        if not context_mask[i]:
            continue
        for j in range(i, min(len(end), i + longest)):
            if context_mask[j] and start[i] + end[j] > best:
                best, where = start[i] + end[j], (offsets[i][0], offsets[j][1])
    return where


def test_hf_folder_answers_with_no_peftqa_code_as_peftqa_does(bert_runs, tmp_path):
    """What a question-answering pipeline does, written out: tokenizer + model from the folder,
    best span over the context, cut from the text by character offsets."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    out = tmp_path / "hf"
    export_run(bert_runs["lora"], out, "hf", log=_silent)
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForQuestionAnswering.from_pretrained(out).eval()
    encoded = tokenizer(QUESTION, CONTEXT, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoded.pop("offset_mapping")[0].tolist()
    context_mask = [sequence == 1 for sequence in encoded.sequence_ids(0)]
    start, end = _plain_logits(model, dict(encoded))
    span = _best_span(start[0], end[0], offsets, context_mask)
    loaded = run_folder.load_run(bert_runs["lora"])
    expected = ask(loaded.model, loaded.tokenizer, QUESTION, CONTEXT, scoring=WINDOWS).candidates[0]
    assert CONTEXT[span[0] : span[1]] == expected.text


@pytest.mark.parametrize("method", ONNX_METHODS)
def test_onnx_export_matches_pytorch_within_1e4(tiny_runs, method, tmp_path):
    import onnxruntime

    info = export_run(tiny_runs[method], tmp_path / "onnx", "onnx", log=_silent)
    assert info["verification"]["onnx_max_abs_logit_diff"] <= 1e-4
    assert ("merged_max_abs_logit_diff" in info["verification"]) == get_method(method).merges
    if not get_method(method).merges:  # the adapters are in the graph, not left out by the trace
        import onnx

        graph = onnx.load(str(tmp_path / "onnx" / ONNX_FILE)).graph
        assert any(".adapter.up." in tensor.name for tensor in graph.initializer)
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / ONNX_FILE), providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]
    loaded = run_folder.load_run(tiny_runs[method])
    # Other batch sizes and lengths than the export traced: the axes are dynamic.
    for rows in (1, 3):
        batch = probe_batch(loaded.tokenizer, WINDOWS, rows=rows)
        start, end = session.run(["start_logits", "end_logits"], {n: batch[n].numpy() for n in names})
        reference = logits(loaded.model, batch)
        assert start.shape == reference[0].shape
        assert largest_difference((start, end), reference, batch["attention_mask"].numpy()) <= 1e-4


def test_exports_score_the_runs_dev_questions_with_the_same_answers(bert_runs, tmp_path):
    expected = files.read_json(bert_runs["lora"] / run_folder.METRICS_JSON)
    for fmt in ("hf", "onnx"):
        export_run(bert_runs["lora"], tmp_path / fmt, fmt, log=_silent)
        scored = evaluate_run(tmp_path / fmt)
        assert (scored["exact_match"], scored["f1"]) == (expected["exact_match"], expected["f1"])
        assert scored["eval_questions"] == expected["eval_questions"]
        assert scored["same_answers_as_run"] == scored["compared_with_run"] == expected["eval_questions"]


def test_int8_export_is_smaller_and_reports_scores_before_and_after(bert_runs, tmp_path):
    fp32 = export_run(bert_runs["lora"], tmp_path / "fp32", "onnx", log=_silent)
    lines: list[str] = []
    int8 = export_run(bert_runs["lora"], tmp_path / "int8", "onnx", quantize="int8", log=lines.append)
    report = int8["int8"]
    assert report["int8_onnx_bytes"] < report["fp32_onnx_bytes"] == (tmp_path / "fp32" / ONNX_FILE).stat().st_size
    assert int8["bytes"] < fp32["bytes"]
    assert report["fp32"]["f1"] == pytest.approx(files.read_json(bert_runs["lora"] / run_folder.METRICS_JSON)["f1"])
    assert {"exact_match", "f1", "eval_questions"} <= set(report["int8"])
    assert any("int8" in line and "fp32" in line for line in lines)
    card = (tmp_path / "int8" / run_folder.MODEL_CARD).read_text()
    assert f"{report['int8']['f1']:.2f} in int8 ({report['same_answers']} identical answers)" in card
    scored = evaluate_run(tmp_path / "int8")
    assert scored["f1"] == pytest.approx(report["int8"]["f1"])


# --- refusals -----------------------------------------------------------------------------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_unknown_format_exits_2_with_one_line(bert_runs, tmp_path, capsys):
    assert main(["export", str(bert_runs["lora"]), "--out", str(tmp_path / "x"), "--format", "tflite"]) == 2
    assert "unknown format 'tflite'" in _one_line_error(capsys)
    assert not (tmp_path / "x").exists()


def test_quantize_needs_onnx_and_a_known_scheme(bert_runs, tmp_path, capsys):
    assert main(["export", str(bert_runs["lora"]), "--out", str(tmp_path / "x"), "--quantize", "int8"]) == 2
    assert "--format onnx" in _one_line_error(capsys)
    assert (
        main(["export", str(bert_runs["lora"]), "--out", str(tmp_path / "x"), "--format", "onnx", "--quantize", "int4"])
        == 2
    )
    assert "unknown quantisation 'int4'" in _one_line_error(capsys)


@pytest.mark.parametrize("damage", ["no-folder", "bad-run-json", "no-adapter"])
def test_broken_run_directory_exits_2_with_one_line(bert_runs, tmp_path, capsys, damage):
    import shutil

    run = tmp_path / "run"
    if damage != "no-folder":
        shutil.copytree(bert_runs["lora"], run)
    if damage == "bad-run-json":
        (run / run_folder.RUN_JSON).write_text("{not json")
    if damage == "no-adapter":
        shutil.rmtree(run / "adapter")
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 2
    assert str(run) in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_unwritable_out_exits_2_with_one_line(bert_runs, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["export", str(bert_runs["lora"]), "--out", str(blocker / "out")]) == 2
    assert "cannot write to --out" in _one_line_error(capsys)


def test_existing_out_is_kept_without_force_and_replaced_with_it(bert_runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", str(bert_runs["lora"]), "--out", str(out)]) == 0
    capsys.readouterr()
    first = json.loads((out / EXPORT_JSON).read_text())
    assert main(["export", str(bert_runs["ia3"]), "--out", str(out)]) == 2
    assert "exists; pass --force" in _one_line_error(capsys)
    assert json.loads((out / EXPORT_JSON).read_text()) == first
    assert main(["export", str(bert_runs["ia3"]), "--out", str(out), "--force"]) == 0
    assert json.loads((out / EXPORT_JSON).read_text())["method"] == "ia3"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old folder left


def test_force_replaces_only_an_earlier_export(bert_runs, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    assert main(["export", str(bert_runs["lora"]), "--out", str(precious), "--force"]) == 2
    assert "not a peftqa export" in _one_line_error(capsys)
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert main(["export", str(bert_runs["lora"]), "--out", str(bert_runs["lora"] / "export"), "--force"]) == 2
    assert "overlaps the run directory" in _one_line_error(capsys)


def test_onnx_without_the_extra_names_it(bert_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert main(["export", str(bert_runs["lora"]), "--out", str(tmp_path / "x"), "--format", "onnx"]) == 2
    assert "peftqa[onnx]" in _one_line_error(capsys)


def test_evaluate_refuses_a_folder_that_is_neither_run_nor_export(tmp_path, capsys):
    (tmp_path / EXPORT_JSON).write_text(json.dumps({"format": "tflite"}))
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a peftqa export" in _one_line_error(capsys)
    with pytest.raises(PeftqaError):
        evaluate_run(tmp_path / "missing")


# --- an interrupted export leaves nothing behind --------------------------------------------------


def test_sigterm_during_an_export_removes_its_staging_folder(tmp_path):
    import os
    import signal
    import time

    from peftqa.export.folder import staging_folder

    with pytest.raises(SystemExit) as ended, staging_folder(tmp_path / "out") as staging:
        (staging / "model.safetensors").write_bytes(b"\0" * 1000)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert ended.value.code == 128 + signal.SIGTERM
    assert not list(tmp_path.iterdir())
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_the_next_export_removes_what_a_killed_one_left(tiny_lora_run, tmp_path):
    dead = 5_000_000  # above any process id Linux gives (pid_max is at most 2**22)
    stale = tmp_path / f".out.partial-{dead}-abc"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\0" * 1000)
    alive = tmp_path / f".out.partial-{os.getpid()}-def"  # another export at work in this very process
    alive.mkdir()
    export_run(tiny_lora_run, tmp_path / "out", log=_silent)
    assert not stale.exists() and alive.is_dir() and (tmp_path / "out" / EXPORT_JSON).is_file()


def test_an_export_moved_aside_by_a_killed_publish_is_put_back(tmp_path):
    from peftqa.export.folder import remove_stale_staging

    aside = tmp_path / ".out.old-5000000"
    aside.mkdir()
    (aside / EXPORT_JSON).write_text("{}")
    remove_stale_staging(tmp_path / "out")
    assert (tmp_path / "out" / EXPORT_JSON).is_file() and not aside.exists()
