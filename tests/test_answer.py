"""inference.answer, `peftqa predict RUN --file QUESTIONS --out PREDICTIONS.json [--nbest K]`: one answer per
id, the same answers as `evaluate` gives on the same questions, for runs and exports alike."""

from __future__ import annotations

import json

import pytest

from peftqa.cli.commands import main
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder
from peftqa.inference.answer import NBEST_JSON, predict_file
from peftqa.training.loop import train
from tests.helpers import tiny_run_config
from tests.squad_fixtures import jsonl_rows, v2_articles, write_jsonl, write_v2


@pytest.fixture(scope="module")
def v2_run(tiny_bert_dir, tmp_path_factory):
    """A tiny run trained on SQuAD 2.0-format data with a threshold that answers some questions and not others."""
    folder = tmp_path_factory.mktemp("predict-file")
    dev = write_v2(folder / "dev-v2.json")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEFTQA_CACHE_DIR", str(folder / "cache"))
        config = tiny_run_config(
            tiny_bert_dir, None, folder / "run", train_file=str(dev), dev_file=str(dev), null_threshold=0.0,
            max_steps=2,
        )  # fmt: skip
        train(config, log=lambda line: None)
    return folder / "run", dev


def test_predict_file_writes_one_answer_per_id_the_same_as_evaluate(v2_run, tmp_path):
    run_dir, _ = v2_run
    questions = write_jsonl(tmp_path / "ask.jsonl", jsonl_rows(v2_articles(), answers=False))
    summary = predict_file(run_dir, questions, tmp_path / "predictions.json", nbest=3, log=lambda line: None)
    written = json.loads((tmp_path / "predictions.json").read_text())
    evaluated = json.loads((run_dir / run_folder.PREDICTIONS_JSON).read_text())  # the run's own dev answers
    assert written == evaluated and len(written) == 10 == summary["questions"]
    assert summary["no_answer"] == sum(1 for answer in written.values() if answer == "")
    nbest = json.loads((tmp_path / NBEST_JSON).read_text())
    assert set(nbest) == set(written)
    for question_id, entry in nbest.items():
        assert entry["answer"] == written[question_id] and 1 <= len(entry["spans"]) <= 3
        assert isinstance(entry["null_score"], float)
        scores = [span["score"] for span in entry["spans"]]
        assert scores == sorted(scores, reverse=True)
        # "" exactly where the null score beats the best span's by more than the run's threshold (0.0).
        assert (written[question_id] == "") is (entry["null_score"] - scores[0] > 0.0)


def test_predict_file_takes_squad_json_with_or_without_answers(v2_run, tmp_path):
    run_dir, dev = v2_run
    predict_file(run_dir, dev, tmp_path / "from-json.json", log=lambda line: None)
    assert json.loads((tmp_path / "from-json.json").read_text()) == json.loads(
        (run_dir / "predictions.json").read_text()
    )
    assert not (tmp_path / NBEST_JSON).exists()


def test_predict_file_refuses_bad_input_and_writes_nothing(v2_run, tmp_path):
    run_dir, _ = v2_run
    rows = jsonl_rows(answers=False)
    rows[2]["context"] = ""
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(PeftqaError, match=r"bad\.jsonl:3: question q-publisher: field 'context' is empty"):
        predict_file(run_dir, bad, tmp_path / "out.json")
    good = write_jsonl(tmp_path / "good.jsonl", jsonl_rows(answers=False))
    with pytest.raises(PeftqaError, match="no such folder"):
        predict_file(run_dir, good, tmp_path / "missing" / "out.json")
    with pytest.raises(PeftqaError, match="--nbest must be at most the run's n_best"):
        predict_file(run_dir, good, tmp_path / "out.json", nbest=21)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "good.jsonl"]


def test_predict_file_from_the_command_line_and_on_an_export(v2_run, tmp_path, capsys):
    from peftqa.export import export_run

    run_dir, _ = v2_run
    questions = write_jsonl(tmp_path / "ask.jsonl", jsonl_rows(v2_articles(), answers=False))
    code = main(["predict", str(run_dir), "--file", str(questions), "--out", str(tmp_path / "p.json")])
    assert code == 0 and "10 questions answered" in capsys.readouterr().out
    exported = tmp_path / "export"
    export_run(run_dir, exported, log=lambda line: None)
    assert main(["predict", str(exported), "--file", str(questions), "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text()) == json.loads((tmp_path / "p.json").read_text())
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--file", str(questions)]) == 2
    assert "--file and --out go together" in capsys.readouterr().err
    assert main(["predict", str(run_dir)]) == 2
    assert "give --question and --context" in capsys.readouterr().err


def test_a_question_or_context_that_is_not_utf8_is_one_line(tiny_lora_run, capsys):
    from peftqa.cli.commands import main

    # Bytes that are not UTF-8 reach argv as lone surrogates (Python's surrogateescape).
    for flags in (
        ["--question", "Who\udcff?", "--context", "Jane Austen wrote it."],
        ["--question", "Who?", "--context", "\udc80"],
    ):
        assert main(["predict", str(tiny_lora_run), *flags]) == 2
        err = capsys.readouterr().err
        assert "is not valid UTF-8 text" in err and len(err.strip().splitlines()) == 1
