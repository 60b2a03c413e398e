"""notebooks/compare_methods.ipynb: committed without outputs, written against peftqa's public functions
only, and executed (nbclient, a kernel of this very python) on a tiny study made here."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

import peftqa
from peftqa import files
from peftqa.report import load_results
from peftqa.study.pipeline import STUDY_JSON
from tests.helpers import train_tiny_runs

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compare_methods.ipynb"
KERNEL = "peftqa-tests"


def _code_cells() -> list:
    return [cell for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "code"]


def test_notebook_is_committed_without_outputs_and_uses_public_names_only():
    cells = _code_cells()
    assert cells
    for cell in cells:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    code = "\n".join(cell.source for cell in cells)
    private = re.findall(r"(?:\.|\bimport |,\s*|\(\s*)(_[a-z]\w*)", code)
    assert not private, f"the notebook reaches into private names: {private}"


def _kernel_of_this_python(folder: Path) -> Path:
    """A kernelspec that starts this interpreter (the project's .venv in CI), found through JUPYTER_PATH."""
    spec = folder / "kernels" / KERNEL / "kernel.json"
    spec.parent.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    return folder


def _output_text(cells: list) -> str:
    texts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts += [str(value) for key, value in output.get("data", {}).items() if key.startswith("text/")]
    return "\n".join(texts)


def test_notebook_runs_on_a_tiny_study_and_prints_its_f1s(tiny_bert_dir, squad_dir, tmp_path, monkeypatch):
    study = tmp_path / "study"
    made = train_tiny_runs(("lora", "ia3"), tiny_bert_dir, squad_dir, study / "runs")
    # As `peftqa study` names its runs: relative to where it ran, which the notebook must not depend on.
    summary = {"preset": "tiny", "runs": [f"studies/tiny/runs/{name}" for name in made], "sweeps": []}
    files.write_json_atomic(study / STUDY_JSON, summary)

    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_of_this_python(tmp_path / "jupyter")))
    # The kernel's connection file and IPython's profile in the test's folder, not the user's home.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PEFTQA_STUDY_DIR", str(study))
    # The kernel imports the peftqa these tests import (a checkout's src/, not another install).
    source = str(Path(peftqa.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=120, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # a cell that raises fails the test (CellExecutionError)

    text = _output_text(notebook.cells)
    results = load_results(list(made.values()))
    for result in results:
        assert f"{result.name:>12}: F1 {result.formatted('f1')}" in text, text[:2000]
    assert "Pareto front:" in text and "F1 - " in text
    assert any(o.get("data", {}).get("image/png") for c in notebook.cells for o in c.get("outputs", []))
    answers = [line for line in text.splitlines() if re.match(r"\s*(lora|ia3): ('|\(no answer\))", line)]
    assert len(answers) == 2, text[-1500:]
