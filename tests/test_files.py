"""files: atomic writes leave the old file or the new one, never a partial one; temporary names are unique."""

from __future__ import annotations

import json

import pytest

from peftqa import files
from peftqa.errors import PeftqaError


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "run.json"
    files.write_json_atomic(target, {"a": 1})
    files.write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    files.write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError), files.atomic_path(target) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_two_writers_of_one_target_get_different_temporary_names_with_its_suffix(tmp_path):
    target = tmp_path / "sweep.png"
    with files.atomic_path(target) as first, files.atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        assert first.suffix == second.suffix == ".png"
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    assert target.read_bytes() == b"1"  # the outer block ended last


def test_jsonl_and_read_json(tmp_path):
    files.write_jsonl_atomic(tmp_path / "rows.jsonl", [{"id": "é"}, {"id": "b"}])
    assert (tmp_path / "rows.jsonl").read_text(encoding="utf-8") == '{"id": "é"}\n{"id": "b"}\n'
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PeftqaError, match="bad.json: not valid JSON"):
        files.read_json(tmp_path / "bad.json")
    with pytest.raises(PeftqaError, match="missing.json is missing"):
        files.read_json(tmp_path / "missing.json")


def test_cache_dir_follows_peftqa_cache_dir_else_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTQA_CACHE_DIR", str(tmp_path / "private"))
    assert files.cache_dir("features") == tmp_path / "private" / "features"
    monkeypatch.delenv("PEFTQA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.cache_dir("features") == files.user_cache_dir("features") == tmp_path / "xdg" / "peftqa" / "features"


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_mode_of_any_new_file_not_owner_only(tmp_path, umask):
    import os

    before = os.umask(umask)
    try:
        files.write_json_atomic(tmp_path / "run.json", {"a": 1})
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(before)
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_give_usual_modes_opens_owner_only_files_and_folders(tmp_path):
    (tmp_path / "adapter").mkdir(mode=0o700)
    (tmp_path / "adapter" / "weights.safetensors").write_bytes(b"x")
    (tmp_path / "adapter" / "weights.safetensors").chmod(0o600)
    files.give_usual_modes(tmp_path / "adapter")
    umask = files.current_umask()
    assert (tmp_path / "adapter").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "adapter" / "weights.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("value", [float("nan"), {"a": [1.0, float("inf")]}, [{"loss": -float("inf")}]])
def test_json_is_never_written_with_nan_or_infinity(tmp_path, value):
    with pytest.raises(ValueError, match=r"run\.json: a non-finite number at .* cannot be written as JSON"):
        files.write_json_atomic(tmp_path / "run.json", value)
    assert not list(tmp_path.iterdir())  # nothing written, no temporary left
    files.write_json_atomic(tmp_path / "run.json", files.finite(value))  # null where a number was not one
    assert "NaN" not in (tmp_path / "run.json").read_text() and "Infinity" not in (tmp_path / "run.json").read_text()
    with pytest.raises(ValueError, match="non-finite"):
        files.write_jsonl_atomic(tmp_path / "rows.jsonl", [{"ok": 1}, value])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than the reader allows"),
        (b'{"f1": ' + b"9" * 5000 + b"}", "line 1 column 8: a number of 5,000 digits"),
        (b'{"id": "\\ud800"}', "field 'id' holds a lone UTF-16 surrogate"),
        (b'{"\\udfff": 1}', "a key .* holds a lone UTF-16 surrogate"),
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b"", "not valid JSON"),
    ],
)
def test_read_json_refuses_what_json_loads_would_crash_on_with_one_line(tmp_path, content, message):
    (tmp_path / "m.json").write_bytes(content)
    with pytest.raises(PeftqaError, match=message) as error:
        files.read_json(tmp_path / "m.json")
    assert str(error.value).startswith(str(tmp_path / "m.json")) and len(str(error.value).splitlines()) == 1


def test_read_json_takes_a_byte_order_mark_and_surrogate_pairs(tmp_path):
    (tmp_path / "m.json").write_bytes(b'\xef\xbb\xbf{"q": "\\ud83d\\ude00"}')
    assert files.read_json(tmp_path / "m.json") == {"q": "\U0001f600"}


def test_destination_state_tells_new_ours_and_theirs_and_refuses_files(tmp_path):
    is_ours = lambda folder: (folder / "run.json").is_file()  # noqa: E731
    assert files.destination_state(tmp_path / "a" / "b", "--out", is_ours) == "new"
    (tmp_path / "empty").mkdir()
    assert files.destination_state(tmp_path / "empty", "--out", is_ours) == "new"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    assert files.destination_state(tmp_path / "run", "--out", is_ours) == "ours"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    assert files.destination_state(tmp_path / "mine", "--out", is_ours) == "theirs"
    (tmp_path / "file").write_text("x")
    with pytest.raises(PeftqaError, match="--out .*file exists and is not a folder"):
        files.destination_state(tmp_path / "file", "--out", is_ours)
    with pytest.raises(PeftqaError, match="cannot write to --out .*file/sub: .*file is not a folder"):
        files.destination_state(tmp_path / "file" / "sub", "--out", is_ours)


def test_a_peftqa_error_is_one_line_whatever_it_quotes():
    assert str(PeftqaError("title 'a\nb\u2028c' is wrong")) == "title 'a b c' is wrong"
