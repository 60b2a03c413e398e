"""`datasets` sources: a folder saved with `save_to_disk` reads into the same Examples as the JSON file.

The Hub itself cannot be reached here; the real loading code (`datasets.load_from_disk`, and
`datasets.load_dataset` for a name) is the same either way. Skipped without the optional package.
"""

from __future__ import annotations

import pytest

from peftqa.data import load_squad
from peftqa.data.hub import split_source
from peftqa.errors import PeftqaError
from tests.squad_fixtures import jsonl_rows, v2_articles, write_v2


def test_a_saved_dataset_folder_reads_like_the_json_file(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = jsonl_rows(v2_articles())
    columns = {name: [row[name] for row in rows] for name in ("id", "title", "context", "question", "answers")}
    datasets.DatasetDict({"validation": datasets.Dataset.from_dict(columns)}).save_to_disk(str(tmp_path / "saved"))
    expected = load_squad(write_v2(tmp_path / "dev-v2.json"))
    assert load_squad(tmp_path / "saved", role="dev") == expected
    assert load_squad(f"{tmp_path / 'saved'}:validation", role="train") == expected
    with pytest.raises(PeftqaError, match="no split 'train'"):
        load_squad(tmp_path / "saved", role="train")


def test_a_source_that_is_no_file_says_what_it_would_need(tmp_path, monkeypatch):
    from peftqa.data import hub

    monkeypatch.setattr(hub, "datasets_installed", lambda: False)
    with pytest.raises(PeftqaError, match=r"nowhere\.json: no such file, and the `datasets` package is not installed"):
        load_squad(tmp_path / "nowhere.json")


def test_split_source_names_its_split_or_takes_the_roles():
    assert split_source("squad_v2:validation", "train") == ("squad_v2", "validation")
    assert split_source("squad_v2", "train") == ("squad_v2", "train")
    assert split_source("squad_v2", "dev") == ("squad_v2", "validation")
