"""study/record: study.json read back (by the study's next call and by study_folders), checked when read."""

from __future__ import annotations

import pytest

from peftqa.errors import PeftqaError
from peftqa.study.record import STUDY_JSON, earlier_calls, study_folders


@pytest.mark.parametrize(
    "content",
    ["[]", '{"runs": "lora", "sweeps": []}', '{"runs": [], "sweeps": [1]}', '{"runs": [], "sweeps": []'],
)
def test_a_damaged_study_json_is_one_line(tmp_path, content):
    (tmp_path / STUDY_JSON).write_text(content)
    for read in (lambda: study_folders(tmp_path), lambda: earlier_calls(tmp_path, "quick", [], [], [])):
        with pytest.raises(PeftqaError, match="study.json") as error:
            read()
        assert len(str(error.value).splitlines()) == 1


def test_a_good_study_json_is_read(tmp_path):
    (tmp_path / "runs" / "lora").mkdir(parents=True)
    (tmp_path / STUDY_JSON).write_text('{"preset": "quick", "runs": ["studies/quick/runs/lora"], "sweeps": []}')
    assert study_folders(tmp_path) == ([tmp_path / "runs" / "lora"], [])
