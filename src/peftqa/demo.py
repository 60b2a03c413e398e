"""`make demo`: train LoRA and (IA)3 on the quick preset and print the comparison table."""

from __future__ import annotations

from pathlib import Path

from peftqa.config import RunConfig, preset
from peftqa.data import ensure_squad
from peftqa.report import results_table
from peftqa.train import train

DEMO_METHODS = ("lora", "ia3")


def run_demo(output_root: str = "runs", data_dir: str | None = None, methods=DEMO_METHODS) -> list[dict]:
    """Train each method with the quick preset (re-using finished runs) and print the table."""
    data_dir = str(ensure_squad(data_dir))
    results = []
    for method in methods:
        run_dir = Path(output_root) / f"quick-{method}"
        config = RunConfig.from_dict(
            {**preset("quick"), "method": method, "data_dir": data_dir, "output_dir": str(run_dir)}
        )
        results.append(train(config, resume=True))
    print()
    print(results_table(results))
    print(f"\nRun directories are under {output_root}/; compare them in a browser with `peftqa serve`.")
    return results
