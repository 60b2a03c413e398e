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
