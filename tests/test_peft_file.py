"""`--method peft --peft-config CONFIG.json` (methods/peft_file.py): a peft config file trains through
`peftqa train`, reloads exactly, is recorded and named in reports; bad files exit 2 with one line."""

from __future__ import annotations

import json
import re

import pytest
import torch

from peftqa.cli.commands import main
from peftqa.data import load_squad
from peftqa.features.windows import build_features
from peftqa.inference import run_folder
from peftqa.inference.evaluate import evaluate
from peftqa.inference.rescore import evaluate_run
from peftqa.methods import get_method, methods_in_all
from peftqa.model.backbone import load_qa_model
from peftqa.report import build_report
from peftqa.study.pipeline import parse_methods


def _train_flags(model_dir, squad_dir, out) -> list[str]:
    """`peftqa train` flags for a run of seconds on the tiny models and data (tests.helpers.tiny_run_config's)."""
    values = {
        "model": model_dir,
        "data-dir": squad_dir,
        "max-length": 128,
        "doc-stride": 32,
        "batch-size": 2,
        "eval-batch-size": 4,
        "epochs": 1,
        "lr": 1e-2,
        "precision": "fp32",
        "output-dir": out,
    }
    return [f"--{name}={value}" for name, value in values.items()]


@pytest.fixture(scope="module")
def lora_config(tmp_path_factory):
    from peft import LoraConfig

    folder = tmp_path_factory.mktemp("lora-config")
    LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]).save_pretrained(folder)
    return folder / "adapter_config.json"


@pytest.fixture(scope="module")
def trained(lora_config, tiny_bert_dir, squad_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("peft") / "run"
    # Module-scoped, so set up before the autouse fixture that isolates the feature cache: isolate it here.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEFTQA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "peftqa-cache"))
        code = main(
            [
                "train",
                "--method",
                "peft",
                "--peft-config",
                str(lora_config),
                *_train_flags(tiny_bert_dir, squad_dir, run_dir),
            ]
        )
    assert code == 0
    return run_dir


def test_a_lora_config_trains_and_its_adapter_reloads_exactly(trained, squad_dir):
    saved = json.loads((trained / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["r"] == 4 and sorted(saved["target_modules"]) == ["query", "value"]
    assert saved["modules_to_save"] == ["qa_outputs"] and saved["task_type"] is None
    metrics = json.loads((trained / run_folder.METRICS_JSON).read_text())
    # The config's adapter and the QA head: r (in + out) per query and value layer of the 2 blocks.
    assert metrics["trainable_params"] == 4 * 4 * (32 + 32) + (32 * 2 + 2)

    # Reloaded, it predicts and scores as the run did at its end.
    loaded = run_folder.load_run(trained)
    examples = load_squad(squad_dir / "dev-v1.1.json")
    features = build_features(examples, loaded.tokenizer, 128, 32)
    result = evaluate(loaded.model, examples, features, loaded.tokenizer.pad_token_id)
    assert result.predictions == json.loads((trained / run_folder.PREDICTIONS_JSON).read_text())
    assert result.loss == pytest.approx(metrics["eval_loss"])
    assert evaluate_run(trained)["f1"] == pytest.approx(metrics["f1"])


def test_the_model_keeps_bert_s_segment_embeddings(trained, tiny_bert_dir):
    """A plain PeftModel: peft's question-answering one would drop token_type_ids."""
    model = get_method("peft").load(load_qa_model(str(tiny_bert_dir)), trained)
    assert type(model).__name__ == "PeftModel"
    ids = torch.randint(1000, 2000, (1, 16), generator=torch.Generator().manual_seed(0))
    segments = (torch.arange(16) >= 8).long()[None]
    with torch.no_grad():
        with_segments, without = model(input_ids=ids, token_type_ids=segments), model(input_ids=ids)
    assert not torch.allclose(with_segments.start_logits, without.start_logits)


def test_the_run_records_the_config_and_the_report_names_its_type(trained, lora_config, tmp_path):
    settings = json.loads((trained / run_folder.RUN_JSON).read_text())
    assert settings["config"]["method_options"] == {"peft_config": str(lora_config)}
    details = settings["method_details"]
    assert details["peft_type"] == "LORA" and details["label"] == "peft (Lora config)"
    assert details["peft_config"] == json.loads(lora_config.read_text())

    markdown, _ = build_report([trained], out_dir=tmp_path / "report", qualitative=False, log=lambda line: None)
    results = markdown.read_text().split("## Results")[1].split("## ")[0]
    assert "| run | peft (Lora config) |" in results, results


def _write(path, text: str):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "is not JSON"),
        ('{"r": 4}', "with a peft_type"),
        ('{"peft_type": "NOPE"}', "unknown peft_type 'NOPE'; peft knows ADALORA"),
        ('{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 8}', "prompt learning.*peftqa's methods: adalora"),
        ('{"peft_type": "ADALORA", "total_step": 10}', "use --method adalora"),
        ('{"peft_type": "LORA", "lora_alhpa": 8}', "peft refuses it: .*lora_alhpa"),
        ('{"peft_type": "LORA", "layers_pattern": "layer"}', "peft refuses it: When `layers_pattern` is specified"),
        (
            '{"peft_type": "LORA", "target_modules": ["no_such_layer"]}',
            "peft cannot apply it: No modules were targeted",
        ),
    ],
)
def test_a_bad_config_exits_2_with_one_line_and_writes_nothing(
    content, message, tiny_bert_dir, squad_dir, tmp_path, capsys
):
    path = tmp_path / "config.json" if content is None else _write(tmp_path / "config.json", content)
    out = tmp_path / "run"
    code = main(["train", "--method", "peft", "--peft-config", str(path), *_train_flags(tiny_bert_dir, squad_dir, out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("peftqa: error: "), err
    assert re.search(message, err[0]), err[0]
    assert not out.exists()


def test_without_a_config_the_method_exits_2_before_loading_a_model(capsys):
    code = main(["train", "--method", "peft", "--model", "/no/such/model"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs --peft-config" in err[0], err


def test_a_config_folder_is_read_as_its_adapter_config(lora_config):
    options = get_method("peft").make_options({"peft_config": str(lora_config.parent)})
    assert get_method("peft").run_details(options)["peft_type"] == "LORA"


def test_methods_all_leaves_out_the_method_that_needs_a_config():
    assert "peft" not in parse_methods("all", ()) and "peft" not in methods_in_all()
    assert "adalora" in parse_methods("all", ()) and "lora" in methods_in_all()
    assert parse_methods("peft", ()) == ["peft"]  # named, it is still there
