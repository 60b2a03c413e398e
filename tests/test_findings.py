"""report/findings.py: what the sweeps chose, shares of full fine-tuning, and the floor: each method's F1
against the run that trained the QA head alone, paired on the same questions, in the Findings and in the
results table (hand-written runs, so every verdict is known)."""

from __future__ import annotations

from peftqa.report import findings, load_results, results_rows
from tests.helpers import SWEEP_QUESTIONS, fake_run

QUESTIONS = 30
HEAD_RIGHT = [k % 3 == 0 for k in range(QUESTIONS)]  # the head alone: F1 33.3


def _runs(many_dir, root, prompt_right=None):
    """The floor, a method clearly above it, one a question above it, one below it, and full fine-tuning."""
    one_more = [right or k == 1 for k, right in enumerate(HEAD_RIGHT)]
    return load_results(
        [
            fake_run(root / "head", many_dir, "head", HEAD_RIGHT),
            fake_run(root / "lora", many_dir, "lora", [k % 10 != 1 for k in range(QUESTIONS)]),
            fake_run(root / "prompt", many_dir, "prompt_tuning", prompt_right or one_more),
            fake_run(root / "ia3", many_dir, "ia3", [False] * QUESTIONS),
            fake_run(root / "full", many_dir, "full", [True] * QUESTIONS),
        ]
    )


def _floor_paragraph(results) -> str:
    return next(p for p in findings(results) if p.startswith(("The floor", "No run trained the QA head")))


def test_findings_say_which_methods_learned_beyond_the_qa_head(many_dir, tmp_path):
    text = _floor_paragraph(_runs(many_dir, tmp_path))
    assert text.startswith("The floor: the QA head alone on the frozen encoder (head) scores F1 33.3 [")
    beyond, _, not_shown = text.partition("Not shown to learn beyond the QA head at this budget")
    assert "Learned beyond the QA head (F1 above the floor's, the 95% paired interval above 0): " in beyond
    assert "full +66.7 [" in beyond and "lora +" in beyond and "(30 questions)" in beyond
    assert "prompt_tuning" not in beyond and "ia3" not in beyond
    # One question more than the floor is not told apart from it; below the floor is not beyond it either.
    assert "(the interval includes 0, or lies below it): " in not_shown
    assert "prompt_tuning +3.3 [" in not_shown and "ia3 -33.3 [" in not_shown
    assert "head " not in not_shown.replace("QA head", "")  # the floor is not judged against itself


def test_a_method_clearly_above_the_floor_moves_into_learned(many_dir, tmp_path):
    text = _floor_paragraph(_runs(many_dir, tmp_path, prompt_right=[k % 3 != 2 for k in range(QUESTIONS)]))
    beyond, _, not_shown = text.partition("Not shown to learn")
    assert "prompt_tuning +33.3 [" in beyond and "prompt_tuning" not in not_shown


def test_without_a_head_run_the_findings_say_the_floor_is_not_shown(many_dir, tmp_path):
    results = [r for r in _runs(many_dir, tmp_path) if r.method != "head"]
    assert _floor_paragraph(results).startswith("No run trained the QA head alone (method `head`)")
    headers, _ = results_rows(results)
    assert not any("QA head" in header for header in headers)


def test_the_results_table_marks_each_run_against_the_floor(many_dir, tmp_path):
    headers, rows = results_rows(_runs(many_dir, tmp_path))
    column = headers.index("F1 beyond the QA head (head)")
    assert headers[column - 1] == "F1 [95% CI]"
    marks = {row[0]: row[column] for row in rows}
    assert marks["head"] == "the floor"
    assert marks["lora"].startswith("yes, +") and marks["full"].startswith("yes, +66.7 [")
    assert marks["prompt"].startswith("not shown, +3.3 [") and marks["ia3"].startswith("not shown, -33.3 [")


def test_runs_that_differ_only_in_the_head_s_rate_are_two_settings_named_by_it(many_dir, tmp_path):
    from peftqa import files
    from peftqa.report.pairing import group_runs

    folders = [fake_run(tmp_path / name, many_dir, "lora", HEAD_RIGHT) for name in ("a", "b")]
    for folder, rate in zip(folders, (1e-2, 3e-3), strict=True):
        settings = files.read_json(folder / "run.json")
        files.write_json_atomic(folder / "run.json", {**settings, "head_learning_rate": rate})
    labels = sorted(group.label for group in group_runs(load_results(folders)))
    assert labels == ["lora (head_lr=0.003)", "lora (head_lr=0.01)"]


def test_findings_say_what_the_sweep_chose_and_on_which_questions(many_dir, tmp_path):
    lora = fake_run(tmp_path / "lora", many_dir, "lora", [True] * 30, lr=1e-3)
    trials = [
        {"number": i, "state": "COMPLETE", "params": {"lr": lr}, "f1": f1, "exact_match": f1}
        for i, (lr, f1) in enumerate([(1e-4, 10.0), (3e-4, 20.0), (1e-3, 30.0)])
    ]
    sweep = {
        "method": "lora",
        "search_space": {"lr": [1e-4, 3e-4, 1e-3]},
        **SWEEP_QUESTIONS,
        "trials": trials,
        "best": trials[2],
        "edge_warnings": ["best lr=0.001 is the highest value tried: extend the grid upward"],
    }
    text = " ".join(findings(load_results([lora]), [sweep]))
    assert "The lora sweep chose learning rate 0.001, the highest value of its grid (0.0001, 0.0003, 0.001)" in text
    assert "200 held-out training questions (whole articles) (seeded random sample, seed 0), not dev" in text
    assert "No full fine-tuning run" in text and "used" not in text
    inside = {**sweep, "best": trials[1], "edge_warnings": [], "base_config": {"eval_sample": "first", "eval_seed": 0}}
    text = " ".join(findings(load_results([lora]), [inside]))
    assert "learning rate 0.0003, inside its grid" in text and "(the first in file order), not dev" in text
    assert "The lora run(s) here used 0.001 instead." in text


def test_many_sweeps_inside_their_grids_share_one_sentence_and_the_edge_ones_keep_theirs(many_dir, tmp_path):
    lora = fake_run(tmp_path / "lora", many_dir, "lora", [True] * 30, lr=1e-3)

    def sweep(method: str, best: float, grid=(1e-4, 1e-3, 1e-2)) -> dict:
        trials = [{"number": i, "state": "COMPLETE", "params": {"lr": lr}, "f1": 1.0} for i, lr in enumerate(grid)]
        chosen = next(t for t in trials if t["params"]["lr"] == best)
        space = {"lr": list(grid)}
        return {"method": method, "search_space": space, **SWEEP_QUESTIONS, "trials": trials, "best": chosen}

    sweeps = [sweep("lora", 1e-3), sweep("ia3", 1e-3), sweep("bitfit", 1e-2), sweep("dora", 1e-3)]
    text = findings(load_results([lora]), sweeps)
    shared = [line for line in text if line.startswith("The sweeps of ")]
    assert shared == [
        "The sweeps of lora (0.001), ia3 (0.001), dora (0.001) each chose a learning rate inside its grid "
        "(*Learning-rate sweeps*); their trials were scored on 200 held-out training questions (whole articles) "
        "(seeded random sample, seed 0), not dev."
    ]
    edge = "The bitfit sweep chose learning rate 0.01, the highest value of its grid"
    assert any(line.startswith(edge) for line in text)
    assert not any(line.startswith(("The lora sweep", "The ia3 sweep", "The dora sweep")) for line in text)

    # Two sweeps read as before: a sentence each.
    text = findings(load_results([lora]), sweeps[:2])
    assert not any(line.startswith("The sweeps of ") for line in text)
    assert any(line.startswith("The ia3 sweep chose learning rate 0.001, inside its grid") for line in text)


def test_a_method_larger_on_disk_than_full_fine_tuning_reads_as_a_whole_percentage(many_dir, tmp_path):
    full = fake_run(tmp_path / "full", many_dir, "full", [True] * 30, trainable=10**6, size=1000)
    big = fake_run(tmp_path / "lora", many_dir, "lora", [True] * 30, trainable=1000, size=4000)
    cost = next(line for line in findings(load_results([full, big])) if line.startswith("Cost: "))
    assert "0.1% of its trainable parameters and 400% of its size on disk" in cost, cost
