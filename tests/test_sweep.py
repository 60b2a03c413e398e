"""Sweeps on a tiny random BERT: grid, best by F1, edge warning, resume, --lr from:SWEEP_DIR."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from peftqa import files
from peftqa.cli.commands import build_parser, config_from_args
from peftqa.data import load_squad, split_articles
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder
from peftqa.settings.run_config import RunConfig
from peftqa.sweep import SweepConfig, edge_warnings, pick_best, resolve_lr, run_sweep
from peftqa.sweep import search as sweep_search
from peftqa.sweep.rungs import halving_hooks, read_evaluations, separation, separation_text
from peftqa.sweep.storage import open_study
from peftqa.sweep.sweep_config import Rungs, grid_points
from tests.helpers import tiny_run_config
from tests.squad_fixtures import many_articles, write_squad


def _sweep_config(model_dir, squad_dir, out, **overrides) -> SweepConfig:
    base = tiny_run_config(model_dir, squad_dir, None, batch_size=4, eval_batch_size=8, method_options={"lora_r": 2})
    values = dict(base=base, lrs=[1e-3, 1e-2], train_fraction=1.0, epochs=1, eval_limit=None, output_dir=str(out))
    values.update(overrides)
    return SweepConfig(**values)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test's own ask() of the "killed" trial
def test_grid_sweep_writes_summary_resumes_and_feeds_train(tiny_bert_dir, squad_dir, tmp_path):
    out = tmp_path / "sweep"
    config = _sweep_config(tiny_bert_dir, squad_dir, out, lrs=[1e-3], ranks=[2, 4])

    # A trial killed mid-run stays RUNNING in the database: the next run must redo its point.
    study = open_study(config)
    killed = study.ask()
    killed.suggest_float("lr", 1e-3, 1e-3, log=True)
    killed.suggest_int("lora_r", 2, 4)

    summary = run_sweep(config, log=lambda line: None)
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["best"] == summary["best"] and (out / "sweep.png").stat().st_size > 0
    complete = [t for t in saved["trials"] if t["state"] == "COMPLETE"]
    assert sorted((t["params"]["lr"], t["params"]["lora_r"]) for t in complete) == [(1e-3, 2), (1e-3, 4)]
    assert any(t["state"] == "FAIL" for t in saved["trials"])
    assert all(Path(t["run_dir"], "metrics.json").is_file() for t in complete)
    # Each trial keeps its F1's interval over the held-out questions (the sweep plot draws it).
    assert all(t["f1_ci"][0] <= t["f1"] <= t["f1_ci"][1] for t in complete)
    assert saved["best_by_eval_loss"]["eval_loss"] == min(t["eval_loss"] for t in complete)
    assert saved["edge_warnings"], "a best value on a two-point grid is always on its edge"

    # Re-running a finished sweep trains nothing more.
    again = run_sweep(config, log=lambda line: None)
    assert len(again["trials"]) == len(saved["trials"])

    args = build_parser().parse_args(["train", "--method", "lora", "--lr", f"from:{out}"])
    assert config_from_args(args).optimisation.lr == summary["best"]["params"]["lr"]


def test_best_is_highest_f1_then_em():
    rows = [
        {"state": "COMPLETE", "f1": 50.0, "exact_match": 40.0, "params": {"lr": 1e-4}},
        {"state": "COMPLETE", "f1": 50.0, "exact_match": 45.0, "params": {"lr": 3e-4}},
        {"state": "PRUNED", "f1": 90.0, "exact_match": 90.0, "params": {"lr": 1e-3}},
    ]
    best = pick_best(rows)
    assert best["params"]["lr"] == 3e-4
    assert edge_warnings(best, {"lr": [1e-4, 3e-4, 1e-3]}) == []
    assert "upward" in edge_warnings(rows[2], {"lr": [1e-4, 3e-4, 1e-3]})[0]


class _FakeTrial:
    """What the halving hooks use of an Optuna trial; the pruner's verdict is `prune`, `rivals` the other
    trials of its study (number, intermediate_values, user_attrs)."""

    def __init__(self, prune: bool, rivals: tuple = ()) -> None:
        self.prune, self.reported, self.attrs = prune, [], {}
        self.number = 99
        self.study = SimpleNamespace(get_trials=lambda deepcopy: list(rivals))

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return self.prune

    def set_user_attr(self, key, value):
        self.attrs[key] = value


def _evaluated(run_dir: Path, step: int, f1: float, scores: dict[str, float]) -> SimpleNamespace:
    """The training state right after a held-out evaluation at `step`, as train() hands it to its hooks."""
    last_eval = SimpleNamespace(intervals={"f1": [f1 - 5, f1 + 5]}, scores={q: {"f1": v} for q, v in scores.items()})
    progress = SimpleNamespace(
        step=step, validation=[{"step": step, "f1": f1, "exact_match": f1 / 2}], last_eval=last_eval,
        train_seconds=float(step), stopped_at_step=None,
    )  # fmt: skip
    return SimpleNamespace(progress=progress, run_dir=run_dir, log=print)


def test_each_held_out_evaluation_is_kept_reported_and_prunes_before_the_end(tmp_path):
    import optuna

    rungs = Rungs(first=2, factor=4, total=8)
    assert rungs.steps() == [2, 8]
    # A rung a step before the end would tell nothing the end does not: the first rung moves up instead.
    quick = SimpleNamespace(first_rung=0.25, halving_factor=4)
    assert Rungs.of(quick, 69) == Rungs(18, 4, 69) and Rungs.of(quick, 69).steps() == [18, 69]
    assert Rungs.of(SimpleNamespace(first_rung=0.125, halving_factor=4), 8000).steps() == [1000, 4000, 8000]
    hooks = halving_hooks(trial := _FakeTrial(prune=True), rungs)
    with pytest.raises(optuna.TrialPruned, match="held-out F1 12.50 at step 2 of 8"):
        hooks.after_validation(_evaluated(tmp_path, 2, 12.5, {"q1": 25.0, "q2": 0.0}))
    assert trial.reported == [(2, 12.5)] and trial.attrs["train_seconds"] == 2.0
    kept = read_evaluations(tmp_path)
    assert kept[2]["scores"] == {"q1": 25.0, "q2": 0.0} and kept[2]["f1_ci"] == [7.5, 17.5]
    hooks.after_validation(_evaluated(tmp_path, 8, 30.0, {"q1": 60.0, "q2": 0.0}))  # the end: never pruned
    assert sorted(read_evaluations(tmp_path)) == [2, 8]

    # A trial resumed after step 5 reports the evaluation from before the interruption at its first
    # step, and is judged on it there and then.
    resumed = halving_hooks(again := _FakeTrial(prune=True), rungs)
    with pytest.raises(optuna.TrialPruned, match="at step 2 of 8"):
        resumed.after_step(SimpleNamespace(progress=SimpleNamespace(step=6, stopped_at_step=None), run_dir=tmp_path))
    assert again.reported == [(2, 12.5)]


def test_a_trial_behind_at_a_rung_is_pruned_only_when_the_held_out_questions_settle_it(tmp_path, capsys):
    import optuna

    questions = [f"q{i}" for i in range(60)]
    leader_scores = {q: 100.0 if i % 2 else 0.0 for i, q in enumerate(questions)}  # F1 50
    halving_hooks(_FakeTrial(prune=False), Rungs(2, 4, 8)).after_validation(
        _evaluated(tmp_path / "leader", 2, 50.0, leader_scores)
    )
    leader = SimpleNamespace(number=0, intermediate_values={2: 50.0}, user_attrs={"run_dir": str(tmp_path / "leader")})
    # Behind by noise: two questions of sixty the other way (F1 46.7): the pruner says stop, the questions
    # cannot tell the two apart, so the trial trains on.
    close_scores = dict(leader_scores, q1=0.0, q3=0.0)
    close = halving_hooks(trial := _FakeTrial(prune=True, rivals=(leader,)), Rungs(2, 4, 8))
    close.after_validation(_evaluated(tmp_path / "close", 2, 46.7, close_scores))
    assert trial.reported == [(2, 46.7)] and "not settled on 60 questions: trained on" in capsys.readouterr().out
    # Settled behind (F1 0 on every question): pruned.
    far = halving_hooks(_FakeTrial(prune=True, rivals=(leader,)), Rungs(2, 4, 8))
    with pytest.raises(optuna.TrialPruned, match="behind at this rung"):
        far.after_validation(_evaluated(tmp_path / "far", 2, 0.0, {q: 0.0 for q in questions}))
    # The leader's scores out of sight (another machine's folder): the pruner's verdict stands.
    unseen = SimpleNamespace(number=0, intermediate_values={2: 50.0}, user_attrs={"run_dir": str(tmp_path / "gone")})
    elsewhere = halving_hooks(_FakeTrial(prune=True, rivals=(unseen,)), Rungs(2, 4, 8))
    with pytest.raises(optuna.TrialPruned):
        elsewhere.after_validation(_evaluated(tmp_path / "elsewhere", 2, 46.7, close_scores))


def test_the_summary_says_whether_the_held_out_questions_separate_the_choice_from_the_next(tmp_path):
    questions = [f"q{i}" for i in range(40)]
    folders = {name: tmp_path / name for name in ("best", "close", "far")}
    scores = {
        "best": {q: 100.0 if i % 2 else 50.0 for i, q in enumerate(questions)},
        "close": {q: 100.0 if i % 2 else 40.0 for i, q in enumerate(questions)},
        "far": {q: 0.0 for q in questions},
    }
    for name, folder in folders.items():
        for step in (2, 8):
            halving_hooks(_FakeTrial(prune=False), Rungs(2, 4, 8)).after_validation(
                _evaluated(folder, step, sum(scores[name].values()) / 40, scores[name])
            )
    row = lambda n, name, state, f1, steps: {  # noqa: E731
        "number": n, "params": {"lr": {"best": 1e-3, "close": 3e-3, "far": 1e-2}[name]}, "state": state, "f1": f1,
        "exact_match": 0.0, "steps": steps, "kept_step": steps if state == "COMPLETE" else None,
        "run_dir": str(folders[name]),
    }  # fmt: skip
    best = row(0, "best", "COMPLETE", 75.0, 8)
    found = separation(best, [best, row(1, "close", "COMPLETE", 70.0, 8), row(2, "far", "PRUNED", 0.0, 2)])
    assert found["next"] == {"lr": 3e-3} and found["steps"] == [8, 8] and found["questions"] == 40
    assert found["difference"] == pytest.approx(5.0) and found["settled"]  # 10 points better on half the questions
    assert "settled: the held-out questions separate them" in separation_text({"best": best, "separation": found})
    # Only a pruned trial besides: compared where it stopped, the chosen one's scores at the same step.
    found = separation(best, [best, row(2, "far", "PRUNED", 0.0, 2)])
    assert found["steps"] == [2, 2] and found["next_state"] == "PRUNED" and found["difference"] == pytest.approx(75)
    assert separation(best, [best]) is None


def test_bad_sweep_input_is_a_peftqa_error(tmp_path):
    with pytest.raises(PeftqaError, match="no rank option"):
        SweepConfig(base=RunConfig.flat(method="ia3"), ranks=[4])
    with pytest.raises(PeftqaError, match="n-trials"):
        SweepConfig(base=RunConfig(), sampler="tpe")
    with pytest.raises(PeftqaError, match="no sweep.json"):
        resolve_lr(f"from:{tmp_path}")
    with pytest.raises(PeftqaError, match="from:SWEEP_DIR"):
        resolve_lr("fast")


def test_edge_best_extends_the_grid_outward():
    assert sweep_search.extended_lrs([1e-4, 3e-4, 1e-3], {"params": {"lr": 1e-3}}) == [1e-4, 3e-4, 1e-3, 3.33e-3]
    assert sweep_search.extended_lrs([1e-4, 3e-4, 1e-3], {"params": {"lr": 1e-4}})[0] == 3.33e-5
    assert sweep_search.extended_lrs([1e-4, 3e-4, 1e-3], {"params": {"lr": 3e-4}}) is None
    # Trials run from the grid's centre outward, the lower side first.
    order = [(p["lr"], p["lora_r"]) for p in grid_points({"lr": [1e-4, 1e-3, 1e-2, 1e-1], "lora_r": [4, 8]})]
    assert order == [(1e-3, 4), (1e-3, 8), (1e-2, 4), (1e-2, 8), (1e-4, 4), (1e-4, 8), (1e-1, 4), (1e-1, 8)]


def test_trials_are_scored_on_held_out_training_articles_never_dev(tiny_bert_dir, tmp_path):
    squad = write_squad(tmp_path / "squad", train=many_articles())  # dev: the two hand-made articles
    config = _sweep_config(tiny_bert_dir, squad, tmp_path / "sweep", lrs=[1e-3, 1e-2, 3e-2], train_fraction=1.0)
    config.base = config.base.replace(validation_questions=5)
    summary = run_sweep(config, log=lambda _: None)

    # The grid runs from its centre outward; each trial keeps its held-out evaluations at the rungs.
    trials = sorted(summary["trials"], key=lambda t: t["number"])
    assert [t["params"]["lr"] for t in trials] == [1e-2, 1e-3, 3e-2]
    assert summary["rungs"][-1] == summary["steps"] == trials[0]["steps"]
    assert summary["compute"]["steps"] == sum(t["steps"] for t in trials)
    for trial in trials:
        assert sorted(read_evaluations(trial["run_dir"])) == [int(s) for s in trial["held_out_f1"]]
        assert trial["state"] != "COMPLETE" or trial["held_out_f1"][str(trial["steps"])] == trial["f1"]
    assert summary["separation"]["next"] != summary["best"]["params"]

    assert summary["eval_split"] == "validation"
    trial = Path(summary["best"]["run_dir"])
    settings = files.read_json(trial / run_folder.RUN_JSON)
    assert settings["config"]["eval_split"] == "validation"
    dev_ids = {e.id for e in load_squad(squad / "dev-v1.1.json")}
    scored = [json.loads(line) for line in (trial / run_folder.SCORES_JSONL).read_text().splitlines()]
    scored_titles = {row["title"] for row in scored}
    assert scored and not {row["id"] for row in scored} & dev_ids  # never a dev question
    assert len(scored) >= 5 and settings["eval_questions"] == len(scored)
    # Trained on every training question except the held-out articles' (train_fraction 1.0).
    all_questions = sum(len(p["qas"]) for a in many_articles() for p in a["paragraphs"])
    assert settings["train_questions"] == all_questions - len(scored)
    rest, held_out = split_articles(load_squad(squad / "train-v1.1.json"), 5, seed=0)
    assert scored_titles == {e.title for e in held_out} and not scored_titles & {e.title for e in rest}


def test_a_grid_extended_past_its_edge_goes_on_in_the_same_study(tiny_bert_dir, squad_dir, tmp_path):
    import optuna

    config = _sweep_config(tiny_bert_dir, squad_dir, tmp_path / "sweep", lrs=[1e-3, 1e-2], extend_edges=1)
    summary = run_sweep(config, log=lambda _: None)

    # A two-point grid's best is on an edge: one point beyond it, queued in the same study, run once.
    assert len(summary["search_space"]["lr"]) == 3
    studies = optuna.get_all_study_names(storage=f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}")
    assert len(studies) == 1
    points = [t["params"]["lr"] for t in summary["trials"]]
    assert sorted(points) == summary["search_space"]["lr"]  # each point once, none run again


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("[]", r"not a peftqa sweep\.json \(found a list"),
        ('{"best": "x", "trials": 5}', "the field 'method' is missing"),
        ('{"method": "lora", "trials": [{"number": 0}]}', "field 'trials' should be a list of trials"),
        ('{"method": "lora", "trials": [], "best": {"number": 0, "state": "COMPLETE", "params": {}, "f1": 1}}', "best"),
        ('{"method": "lora", "trials": [], "eval_limit": "all"}', "field 'eval_limit' should be"),
    ],
)
def test_a_damaged_sweep_json_is_one_line_for_the_report_and_lr_from(tmp_path, content, words):
    from peftqa.sweep import read_sweep, resolve_lr

    (tmp_path / "sweep.json").write_text(content)
    for read in (lambda: read_sweep(tmp_path), lambda: resolve_lr(f"from:{tmp_path}")):
        with pytest.raises(PeftqaError, match=words) as error:
            read()
        assert len(str(error.value).splitlines()) == 1
