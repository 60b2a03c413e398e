"""serve.loading: the modes (merged, shared, fast), shared base weights, exports and the ONNX cache,
warm-up, the memory check, threads per model, and runs that fail to load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from peftqa.inference import run_folder
from peftqa.inference.evaluate import ask
from peftqa.serve.loading import load_models, merged_copies_fit, share_weights, threads_per_model
from tests.helpers import CONTEXT, METHODS, QUESTION, WINDOWS, runs_of_every_method


@pytest.fixture(scope="module")
def run_dirs(tiny_bert_dir, squad_dir, tmp_path_factory) -> dict[str, Path]:
    return runs_of_every_method(tiny_bert_dir, squad_dir, tmp_path_factory)


def _frozen(model) -> list[torch.Tensor]:
    """The base weights inside a peft model (everything but adapters and the trained QA head)."""
    adapter_marks = ("lora_", "ia3_", "modules_to_save")
    return [p for name, p in model.named_parameters() if not any(mark in name for mark in adapter_marks)]


def test_runs_on_one_backbone_share_their_base_weights(run_dirs):
    lora, ia3 = (m.run.model for m in load_models([run_dirs["lora"], run_dirs["ia3"]], mode="shared"))
    ia3_storage = {p.data_ptr() for p in ia3.parameters()}
    frozen = _frozen(lora)
    assert len(frozen) > 10
    assert all(p.data_ptr() in ia3_storage for p in frozen)


def test_loading_every_method_leaves_the_shared_base_weights_unchanged(run_dirs, tiny_bert_dir):
    from peftqa.model.backbone import load_qa_model

    served = load_models([run_dirs[m] for m in METHODS], mode="shared")
    assert [m.run.method for m in served] == list(METHODS)
    fresh = dict(load_qa_model(str(tiny_bert_dir)).named_parameters())
    lora = next(m for m in served if m.run.method == "lora").run.model
    base = lora.get_base_model()
    compared = 0
    for name, parameter in base.named_parameters():
        original = name.replace(".base_layer", "")
        if original in fresh and "qa_outputs" not in name:  # the QA head is new at every load
            assert torch.equal(parameter, fresh[original]), name
            compared += 1
    assert compared > 20


@pytest.mark.parametrize("method", ["full", "bitfit"])
def test_runs_that_write_into_their_base_get_one_of_their_own(run_dirs, method):
    lora, other = load_models([run_dirs["lora"], run_dirs[method]], mode="shared")
    other_storage = {p.data_ptr() for p in other.run.model.parameters()}
    assert not any(p.data_ptr() in other_storage for p in _frozen(lora.run.model))
    # Loaded after it, the other run has not changed the LoRA run's answers.
    alone = run_folder.load_run(run_dirs["lora"])
    expected = ask(alone.model, alone.tokenizer, QUESTION, CONTEXT, scoring=WINDOWS).candidates
    assert lora.answer(QUESTION, CONTEXT, top_k=1)["score"] == pytest.approx(expected[0].probability, abs=1e-6)


@pytest.mark.parametrize("mode", ["merged", "shared"])
def test_served_answers_are_those_of_the_run_loaded_alone(run_dirs, mode):
    for served in load_models([run_dirs["lora"], run_dirs["ia3"]], mode=mode):
        alone = run_folder.load_run(run_dirs[served.name])
        expected = ask(alone.model, alone.tokenizer, QUESTION, CONTEXT, top_k=3, scoring=WINDOWS).candidates
        got = served.answer(QUESTION, CONTEXT, top_k=3)
        assert [got["answer"]] + [a["answer"] for a in got["alternatives"]] == [c.text for c in expected]
        assert got["score"] == pytest.approx(expected[0].probability, abs=1e-5)


@pytest.mark.parametrize("mode", ["merged", "fast"])
def test_merged_modes_give_each_run_its_own_weights_with_no_adapter_layers(run_dirs, mode):
    from peftqa.data import Example
    from peftqa.features.windows import build_features
    from peftqa.inference.forward import predict_logits

    served = load_models([run_dirs[m] for m in ("lora", "ia3", "bitfit")], mode=mode)
    assert [m.bf16 for m in served] == [mode == "fast"] * 3
    for model in served:
        names = [name for name, _ in model.run.model.named_parameters()]
        assert not any(mark in name for name in names for mark in ("lora_", "ia3_", "base_layer"))
        # Merged in fp32, the model computes what the unmerged adapter does.
        alone = run_folder.load_run(run_dirs[model.run.method])
        features = build_features([Example("q", QUESTION, CONTEXT, (), ())], alone.tokenizer, 128, 32)
        merged_starts, merged_ends, _ = predict_logits(model.run.model, features, 4, 0, bf16=False)
        starts, ends, _ = predict_logits(alone.model, features, 4, 0, bf16=False)
        for merged_logits, plain_logits in ((merged_starts, starts), (merged_ends, ends)):
            assert np.allclose(np.concatenate(merged_logits), np.concatenate(plain_logits), atol=1e-4)
        got = model.answer(QUESTION, CONTEXT, top_k=2)
        assert got["answer"] == CONTEXT[got["start"] : got["end"]]
    lora_storage = {p.data_ptr() for p in served[0].run.model.parameters()}
    assert not any(p.data_ptr() in lora_storage for p in served[1].run.model.parameters())


def test_default_answers_are_those_of_evaluate_on_every_dev_question(run_dirs, squad_dir):
    """The page's default mode and `peftqa evaluate` give the same answer to every fixture question."""
    from peftqa.data import eval_questions
    from peftqa.features.windows import build_features
    from peftqa.inference.evaluate import evaluate

    for served in load_models([run_dirs["lora"], run_dirs["ia3"]]):
        alone = run_folder.load_run(run_dirs[served.name])
        examples, _ = eval_questions(str(squad_dir), alone.config.questions)
        features = build_features(examples, alone.tokenizer, 128, 32)
        expected = evaluate(alone.model, examples, features, alone.tokenizer.pad_token_id, alone.config.scoring)
        assert len(examples) >= 5
        got = {e.id: served.answer(e.question, e.context, top_k=1)["answer"] for e in examples}
        assert got == expected.predictions


def test_served_exports_answer_as_their_runs(run_dirs, tmp_path):
    from peftqa.export import export_run

    export_run(run_dirs["lora"], tmp_path / "hf", "hf", log=lambda line: None)
    export_run(run_dirs["lora"], tmp_path / "onnx", "onnx", log=lambda line: None)
    (run,) = load_models([run_dirs["lora"]])
    (hf,) = load_models([tmp_path / "hf"])
    (onnx,) = load_models([tmp_path / "onnx"], backend="onnx")
    assert (hf.backend, onnx.backend) == ("torch fp32, merged", "onnxruntime fp32")
    expected = run.answer(QUESTION, CONTEXT, top_k=3)
    for served in (hf, onnx):
        got = served.answer(QUESTION, CONTEXT, top_k=3)
        assert [got["answer"], *(a["answer"] for a in got["alternatives"])] == [
            expected["answer"],
            *(a["answer"] for a in expected["alternatives"]),
        ]
        assert got["score"] == pytest.approx(expected["score"], abs=1e-5)
    lines: list[str] = []
    loaded = load_models([tmp_path / "onnx", run_dirs["lora"]], report=lines.append)
    assert [m.name for m in loaded] == ["lora"] and "serve it with --backend onnx" in lines[0]


def test_the_onnx_backend_exports_a_run_once_and_again_after_it_changes(run_dirs, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import shutil

    import peftqa.export as export_module

    run = tmp_path / "lora"
    shutil.copytree(run_dirs["lora"], run)
    exports: list[str] = []
    real_export = export_module.export_run
    monkeypatch.setattr(export_module, "export_run", lambda *a, **k: exports.append(str(a[1])) or real_export(*a, **k))
    lines: list[str] = []
    first = load_models([run], backend="onnx", report=lines.append)
    assert first[0].backend == "onnxruntime fp32" and first[0].describe()["run_dir"] == "lora"  # not the cache's
    assert len(exports) == 1 and "exporting lora to ONNX once" in lines[0]
    # Same answers as the run itself (the export is checked against PyTorch too).
    expected = load_models([run])[0].answer(QUESTION, CONTEXT, top_k=3)
    got = first[0].answer(QUESTION, CONTEXT, top_k=3)
    assert [got["answer"], *(a["answer"] for a in got["alternatives"])] == [
        expected["answer"],
        *(a["answer"] for a in expected["alternatives"]),
    ]
    load_models([run], backend="onnx")
    assert len(exports) == 1  # unchanged run: the cached export
    (run / "run.json").write_text((run / "run.json").read_text() + " ")  # as if trained again
    load_models([run], backend="onnx")
    assert len(exports) == 2 and exports[1] != exports[0]


def test_merged_copies_are_given_up_when_they_would_not_fit(run_dirs):
    folders = [run_dirs["lora"], run_dirs["ia3"]]
    assert merged_copies_fit(folders, available=10**12)
    assert not merged_copies_fit(folders, available=1000)


def test_each_model_gets_its_share_of_the_cores():
    assert [threads_per_model(models, cores=8) for models in (0, 1, 2, 3, 16)] == [8, 8, 4, 2, 1]


def test_loaded_models_have_answered_once_before_the_first_request(run_dirs, monkeypatch):
    import peftqa.inference.evaluate as predict_module

    forward_passes, tokenizers = [], []
    real, build = predict_module.predict_logits, predict_module.build_features
    monkeypatch.setattr(predict_module, "predict_logits", lambda *a, **k: forward_passes.append(1) or real(*a, **k))
    monkeypatch.setattr(predict_module, "build_features", lambda *a, **k: tokenizers.append(a[1]) or build(*a, **k))
    loaded = load_models([run_dirs["lora"], run_dirs["ia3"]])
    assert len(forward_passes) == 2
    # The warm-up left a tokenizer copy for the first request: it borrows that one, no new copy.
    for model, warmed_up_with in zip(loaded, tokenizers, strict=True):
        assert warmed_up_with is not model.run.tokenizer
        with model.borrowed_tokenizer() as first_request:
            assert first_request is warmed_up_with


def test_a_run_that_cannot_answer_is_skipped_at_load_not_at_the_first_request(run_dirs, monkeypatch):
    import peftqa.inference.evaluate as predict_module

    real = predict_module.predict_logits
    forward_passes: list[int] = []

    def second_run_fails(*args, **kwargs):  # runs load in the order given: ia3 is the second
        forward_passes.append(1)
        if len(forward_passes) == 2:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_logits", second_run_fails)
    lines: list[str] = []
    loaded = load_models([run_dirs["lora"], run_dirs["ia3"]], report=lines.append)
    assert [model.name for model in loaded] == ["lora"]
    assert lines == ["skipped ia3: mat1 and mat2 shapes cannot be multiplied"]


def test_share_weights_copies_modules_not_tensors(tiny_bert_dir):
    from peftqa.model.backbone import load_qa_model

    base = load_qa_model(str(tiny_bert_dir))
    copy = share_weights(base)
    assert copy is not base and copy.bert.encoder is not base.bert.encoder
    assert all(a is b for a, b in zip(copy.parameters(), base.parameters(), strict=True))
    assert all(a is b for a, b in zip(copy.buffers(), base.buffers(), strict=True))


def test_a_run_named_twice_loads_once_and_names_stay_unique(run_dirs, tmp_path):
    import shutil

    other = tmp_path / "elsewhere" / "lora"
    shutil.copytree(run_dirs["lora"], other)
    loaded = load_models([run_dirs["lora"], Path(run_dirs["lora"]) / ".." / "lora", other])
    assert [m.name for m in loaded] == [f"{run_dirs['lora'].parent.name}/lora", "elsewhere/lora"]


def test_broken_run_is_reported_by_name_and_skipped(run_dirs, tmp_path):
    broken = tmp_path / "broken-run"
    broken.mkdir()
    (broken / run_folder.RUN_JSON).write_text("{not json")
    lines: list[str] = []
    loaded = load_models([broken, run_dirs["lora"], tmp_path / "missing"], report=lines.append)
    assert [m.name for m in loaded] == ["lora"]
    assert len(lines) == 2 and "broken-run" in lines[0] and "missing" in lines[1]


def test_runs_that_cannot_merge_answer_as_alone_in_every_mode_and_on_onnx(run_dirs):
    """Bottleneck adapters cannot merge: the default mode keeps their modules on the run's own base,
    and the ONNX backend traces them (the cached export) instead of refusing."""
    pytest.importorskip("onnxruntime")
    run = run_dirs["parallel"]
    alone = run_folder.load_run(run)
    expected = ask(alone.model, alone.tokenizer, QUESTION, CONTEXT, top_k=3, scoring=WINDOWS).candidates
    (default,) = load_models([run])
    (shared,) = load_models([run], mode="shared")
    lines: list[str] = []
    (onnx,) = load_models([run], backend="onnx", report=lines.append)
    assert default.backend == "torch fp32, unmerged adapters" and onnx.backend == "onnxruntime fp32", lines
    assert any(".adapter." in name for name, _ in default.run.model.named_parameters())
    for served in (default, shared, onnx):
        got = served.answer(QUESTION, CONTEXT, top_k=3)
        assert [got["answer"]] + [a["answer"] for a in got["alternatives"]] == [c.text for c in expected]
        assert got["score"] == pytest.approx(expected[0].probability, abs=1e-5)
