"""Two studies of the same preset side by side, method by method: the learning rate each sweep chose,
each final run's F1 with its interval, and the paired difference on the questions both scored.

    python -m tools.compare_studies studies/quick-fp32 studies/quick        # A = fp32, B = bf16

Made to check that a change of arithmetic (`--precision`) or of code leaves the answer unchanged:
the same learning rates and F1s within each other's paired 95% interval.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from peftqa import files
from peftqa.inference import run_folder
from peftqa.scoring.stats import bootstrap_interval, paired_difference


def compare(first: Path, second: Path) -> list[dict]:
    """One row per final run both studies hold (by run folder name)."""
    studies = [files.read_json(folder / "study.json") for folder in (first, second)]
    rows = []
    for name in sorted(studies[0]["learning_rates"]):
        if name not in studies[1]["learning_rates"]:
            continue
        scores = [run_folder.read_scores(folder / "runs" / name) for folder in (first, second)]
        shared = [question for question in scores[0] if question in scores[1]]
        a = [scores[0][q]["f1"] for q in shared]
        b = [scores[1][q]["f1"] for q in shared]
        metrics = [files.read_json(folder / "runs" / name / run_folder.METRICS_JSON) for folder in (first, second)]
        rows.append(
            {
                "run": name,
                "lr": [study["learning_rates"][name] for study in studies],
                "f1": [sum(a) / len(a), sum(b) / len(b)],
                "f1_ci": [bootstrap_interval(a), bootstrap_interval(b)],
                "difference": paired_difference(b, a),
                "questions": len(shared),
                "train_seconds": [m["train_seconds"] for m in metrics],
                "precision": [
                    files.read_json(folder / "runs" / name / run_folder.RUN_JSON).get("levers", {}).get("precision", {})
                    for folder in (first, second)
                ],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="study folder A")
    parser.add_argument("second", type=Path, help="study folder B")
    args = parser.parse_args(argv)
    totals = [files.read_json(folder / "study.json")["total_seconds"] for folder in (args.first, args.second)]
    print(f"A = {args.first} ({totals[0] / 60:.1f} min), B = {args.second} ({totals[1] / 60:.1f} min)")
    print(f"{'run':<10}{'lr A':>8}{'lr B':>8}{'F1 A [95% CI]':>24}{'F1 B [95% CI]':>24}{'B - A [paired 95% CI]':>28}")
    for row in compare(args.first, args.second):
        (f1a, f1b), (cia, cib), d = row["f1"], row["f1_ci"], row["difference"]
        shown_a = f"{f1a:.2f} [{cia[0]:.2f}, {cia[1]:.2f}]"
        shown_b = f"{f1b:.2f} [{cib[0]:.2f}, {cib[1]:.2f}]"
        shown_d = f"{d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"
        used = [p.get("used", "fp32") for p in row["precision"]]
        print(
            f"{row['run']:<10}{row['lr'][0]:>8g}{row['lr'][1]:>8g}{shown_a:>24}{shown_b:>24}{shown_d:>28}  "
            f"{'settled' if d['settled'] else 'not settled'}; {row['questions']} questions; train s "
            f"{row['train_seconds'][0]:.0f} / {row['train_seconds'][1]:.0f}; precision {used[0]} / {used[1]}"
        )


if __name__ == "__main__":
    main()
