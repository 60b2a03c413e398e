"""One study's final runs as one method table (docs/results/), sorted by F1: the learning rate each sweep
chose (and its grid), F1 with its 95% interval, the paired differences on the same dev questions to the
floor (the QA head alone: learned beyond it or not) and to full fine-tuning (settled or not), trainable
share, adapter size, training seconds and precision; below it the seconds the sweeps and the final runs
spent training and scoring (the study's compute, model loading left out), also when it ran in parts.

    python -m tools.study_table studies/all-quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

from peftqa import files
from peftqa.inference import run_folder
from peftqa.report.pairing import beyond_head, compare, floor_of, reference_run, verdict
from peftqa.report.render import human_bytes
from peftqa.report.results import load_results


def _grid(summary: dict) -> str:
    """The rates the method's sweep tried, the chosen one in bold, a pruned one marked †."""
    chosen = summary["best"]["params"]["lr"]
    state = {t["params"]["lr"]: t.get("state") for t in summary["trials"] if t.get("state") in ("COMPLETE", "PRUNED")}
    return ", ".join(
        f"**{lr:g}**" if lr == chosen else f"{lr:g}" + ("†" if state[lr] == "PRUNED" else "") for lr in sorted(state)
    )


def _sweep_seconds(study: Path, name: str, summary: dict) -> float:
    """Training + scoring seconds of the method's finished sweep trials (each trial's metrics.json), and
    the training seconds of its pruned ones (sweep.json)."""
    total = 0.0
    for trial in summary["trials"]:
        if trial.get("state") == "PRUNED":
            total += trial.get("train_seconds") or 0.0
            continue
        if trial.get("state") != "COMPLETE" or trial.get("duplicate_of") is not None:
            continue  # a failed or killed trial's time is not recorded; a duplicate re-used another's run
        # Under this study folder, wherever the study ran (the summary records the path it ran at).
        path = study / "sweeps" / name / "trials" / Path(trial["run_dir"]).name / run_folder.METRICS_JSON
        metrics = files.read_json(path)
        total += metrics["train_seconds"] + metrics.get("eval_seconds", 0.0)
    return total


def table(study: Path) -> str:
    """Every finished final run under STUDY/runs (a study run in several parts, or resumed, included)."""
    finished = sorted(p.parent for p in (study / "runs").glob(f"*/{run_folder.METRICS_JSON}"))
    results = load_results(finished)
    reference, _ = reference_run(results)
    floor = floor_of(results)
    lines = [
        "| method | lr (its sweep's grid) | F1 [95% CI] | F1 beyond the QA head [paired 95% CI] "
        "| F1 − full [paired 95% CI] | trainable | adapter size | train s | precision |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    sweep_seconds = final_seconds = 0.0
    for r in sorted(results, key=lambda r: -r.mean("f1")):
        if r is reference:
            gap = "—"
        else:
            c = compare(r, reference, "f1")
            gap = f"{c['difference']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}], {verdict(c)}"
        beyond = "no head-only run" if floor is None else beyond_head(r, floor)
        m = r.metrics
        sweep = files.read_json(study / "sweeps" / r.name / "sweep.json")
        sweep_seconds += _sweep_seconds(study, r.name, sweep)
        settings = files.read_json(r.run_dir / run_folder.RUN_JSON)
        if "final_run_of" not in settings:  # a copy of the sweep's best trial is counted in the sweep
            final_seconds += m["train_seconds"] + m.get("eval_seconds", 0.0)
        precision = settings.get("levers", {}).get("precision", {}).get("used", "?")
        lines.append(
            f"| {r.name} | {_grid(sweep)} | {r.formatted('f1')} | {beyond} | {gap} | "
            f"{m['trainable_params']:,} ({m['trainable_percent']:.2f} %) | {human_bytes(m.get('artifact_bytes', 0))} "
            f"| {m['train_seconds']:.0f} | {precision} |"
        )
    lines.append("")
    lines.append(
        f"{len(results)} methods; training + scoring: sweeps {sweep_seconds:,.0f} s, "
        f"final runs {final_seconds:,.0f} s, {(sweep_seconds + final_seconds) / 60:.0f} min in all "
        "(model loading left out; a final run that is its sweep's best trial counts in the sweep); "
        "† a rate whose trial was pruned at a rung."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, help="a study folder (peftqa study --output-dir)")
    print(table(parser.parse_args(argv).study))


if __name__ == "__main__":
    main()
