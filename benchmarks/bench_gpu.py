"""GPU training, lever by lever: one table of training speed, GPU use and dev EM/F1.

    PYTHONPATH=src python3 -m benchmarks.bench_gpu --model .gpucarry/minilm --data-dir .gpucarry/squad \\
        --out bench_gpu.json                               # one H100/H200 (docs/training.md)
    python -m benchmarks.bench_gpu --smoke --model minilm-l6 --data-dir ../shared/squad   # CPU: end to end, small

Rows, in order (LoRA r 16 on every linear layer, peftqa's defaults otherwise):
  - the Hugging Face Trainer + peft baseline (benchmarks/baseline_trainer.py: LoRA on query/value,
    windows padded to max_length, bf16), batch 32, on a sample of train questions (speed only);
  - peftqa with every lever off: batch 32, the loss read on the host every step, batches built in
    NumPy, fp32 frozen weights under bf16 autocast, peft's LoRA forward;
  - each lever added in turn: no host read in the step (--log-every-steps 50), batches gathered on the
    GPU, bf16 frozen weights, the fused LoRA forward;
  - then every lever at larger batches (128, 256; --batch-sizes);
  - one epoch on all of SQuAD train, scored on all of dev (EM/F1), at batch 32 and at the largest batch
    (its learning rate scaled by sqrt(batch/32) unless --large-lr is given). The batch-32 epoch is
    skipped when --budget-s would be overrun (the table says so).
Speed rows train --speed-steps steps (fewer at larger batches) over all of train, after one warm-up run;
their features/s and ms/step are peftqa's own train_seconds (device synchronised at each read).
GPU busy % is the mean of `nvidia-smi --query-gpu=utilization.gpu -lms 200` samples taken while the
training steps ran (from each step's end to the next's, as train()'s hooks report them: an epoch's
first step, its evaluation and checkpoint excluded): the share of time a kernel was running, not SM
occupancy.
It writes the table as JSON with --out (after every row, so a run cut short keeps what it measured).
Needs no network: --model must be a local folder there, --data-dir a folder with the SQuAD files.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import machine_description
from benchmarks.gpu_busy import GpuBusy, cuda_available

ALL_OFF = {"log_every_steps": 1, "device_batches": "off", "frozen_bf16": "off", "fused_lora": "off"}
# Levers switched on one after the other: (row label, settings added).
LEVERS = (
    ("+ no host read in the step (log every 50)", {"log_every_steps": 50}),
    ("+ batches gathered on the device", {"device_batches": "on"}),
    ("+ frozen weights in bf16", {"frozen_bf16": "on"}),
    ("+ fused LoRA forward", {"fused_lora": "on"}),
)
ALL_ON = {"log_every_steps": 50, "device_batches": "on", "frozen_bf16": "on", "fused_lora": "on"}


@dataclass
class Row:
    """One line of the table."""

    label: str
    batch: int
    steps: int | None = None
    train_features_per_second: float | None = None
    ms_per_step: float | None = None
    gpu_busy_percent: float | None = None
    exact_match: float | None = None
    f1: float | None = None
    lr: float | None = None
    wall_seconds: float | None = None
    note: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6", help="a local model folder (offline) or minilm-l6")
    parser.add_argument("--data-dir", default=None, help="folder with the SQuAD v1.1 files; default PEFTQA_DATA_DIR")
    parser.add_argument("--out", default=None, help="also write the table as JSON here")
    parser.add_argument("--batch-sizes", default="32,128,256", help="the first is the reference; larger ones follow")
    parser.add_argument("--speed-steps", type=int, default=150, help="steps of a batch-32 speed row (fewer if larger)")
    parser.add_argument("--baseline-questions", type=int, default=6000, help="train questions of the Trainer row")
    parser.add_argument("--train-limit", type=int, default=None, help="train questions (default: all of SQuAD)")
    parser.add_argument("--eval-limit", type=int, default=None, help="dev questions of the F1 rows (default: all)")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--large-lr", type=float, default=None, help="lr of the largest batch's F1 row")
    parser.add_argument("--no-f1", action="store_true", help="speed rows only")
    parser.add_argument("--budget-s", type=float, default=330.0, help="skip the batch-32 epoch past this")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: every row end to end in a minute or two")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batch_sizes.split(",")]
    if args.smoke:
        args.batches = [4, 8]
        args.speed_steps = min(args.speed_steps, 3)
        args.baseline_questions = min(args.baseline_questions, 24)
        args.train_limit = args.train_limit or 24
        args.eval_limit = args.eval_limit or 12
    return args


# ---------------------------------------------------------------------------- rows
class Bench:
    """Runs the rows in one process (CUDA context and kernels warm), one run directory each."""

    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args, self.scratch = args, scratch
        self.busy = GpuBusy()
        self.rows: list[Row] = []
        self.began = time.monotonic()

    def close(self) -> None:
        """Stop sampling GPU use."""
        self.busy.close()

    def config(self, name: str, batch: int, **settings: Any) -> Any:
        from peftqa.settings.run_config import RunConfig

        values = dict(
            method="lora",
            model=self.args.model,
            data_dir=self.args.data_dir,
            max_length=self.args.max_length,
            doc_stride=self.args.doc_stride,
            batch_size=batch,
            epochs=1.0,
            checkpoint_every_steps=10**9,  # no checkpoint inside a measured epoch
            output_dir=str(self.scratch / name),
        )
        values.update(settings)
        return RunConfig.flat(**values)

    def peftqa_row(self, label: str, batch: int, steps: int | None, settings: dict[str, Any], **extra: Any) -> Row:
        """One training run; `steps` None: a whole epoch, scored on the F1 rows' dev questions."""
        speed = steps is not None
        config = self.config(
            f"row{len(self.rows)}",
            batch,
            **settings,
            train_limit=self.args.train_limit,
            eval_limit=32 if speed else self.args.eval_limit,
            max_steps=steps,
            **extra,
        )
        from peftqa.training.loop import train

        row = Row(label, batch, settings={**settings, **extra})
        began = time.monotonic()
        # No loss curve: the run folder is thrown away, and the GPU machine's python may lack matplotlib.
        metrics = train(config, log=_indented, hooks=self.busy.step_hooks(), loss_curve=False)
        row.wall_seconds = time.monotonic() - began
        row.steps = metrics["steps"]
        row.train_features_per_second = metrics["train_features_per_second"]
        row.ms_per_step = 1000 * metrics["train_seconds"] / max(metrics["steps"], 1)
        row.gpu_busy_percent = self.busy.take()
        row.lr = config.learning_rate
        if not speed:
            row.exact_match, row.f1 = metrics["exact_match"], metrics["f1"]
        shutil.rmtree(self.scratch / f"row{len(self.rows)}", ignore_errors=True)
        return row

    def baseline_row(self, batch: int) -> Row:
        from benchmarks.baseline_trainer import BaselineSettings, run_baseline
        from peftqa.data import load_squad, split_path
        from peftqa.model.backbone import resolve_model

        on_gpu = cuda_available()
        settings = BaselineSettings(
            max_length=self.args.max_length,
            doc_stride=self.args.doc_stride,
            batch_size=batch,
            learning_rate=1e-3,
            bf16=on_gpu,
            use_cpu=not on_gpu,
        )
        train_examples = load_squad(split_path(self.args.data_dir, "train"), self.args.baseline_questions, 42)
        dev_examples = load_squad(split_path(self.args.data_dir, "dev"), 16)  # its F1 is not compared
        began = time.monotonic()
        window = self.busy.trainer_callback()
        result = run_baseline(resolve_model(self.args.model), train_examples, dev_examples, settings, [window])
        steps = math.ceil(result["train_features"] / batch)
        return Row(
            "Trainer + peft (LoRA q/v, padded to max_length)",
            batch,
            steps=steps,
            train_features_per_second=result["train_features_per_second"],
            ms_per_step=1000 * result["train_seconds"] / steps,
            gpu_busy_percent=self.busy.take(),
            wall_seconds=time.monotonic() - began,
            lr=settings.learning_rate,
            note=f"{self.args.baseline_questions} train questions",
        )

    def run(self, label: str, make: Callable[[], Row], batch: int) -> Row:
        """One row, kept in the table even when it fails (the error is its note, the traceback on stderr)."""
        print(f"--- {label} (batch {batch})", flush=True)
        try:
            row = make()
        except Exception as error:  # noqa: BLE001 - one failing row must not lose the others
            traceback.print_exc()
            first_line = (str(error).splitlines() or [""])[0][:150]
            row = Row(label, batch, note=f"failed: {type(error).__name__}: {first_line}")
            self.busy.take()
        self.rows.append(row)
        self.save()
        return row

    def save(self) -> None:
        if self.args.out:
            Path(self.args.out).write_text(json.dumps(self.result(), indent=2))

    def result(self) -> dict[str, Any]:
        return {
            "machine": machine_description("cuda" if cuda_available() else "cpu"),
            "model": self.args.model,
            "max_length": self.args.max_length,
            "train_limit": self.args.train_limit,
            "eval_limit": self.args.eval_limit,
            "seconds": time.monotonic() - self.began,
            "rows": [asdict(row) for row in self.rows],
        }


def _indented(line: str) -> None:
    print(f"  {line}", flush=True)


def speed_steps(args: argparse.Namespace, batch: int) -> int:
    """Steps of a speed row: --speed-steps at the first batch size; above it as many features, at least 30 steps."""
    reference = args.batches[0]
    if batch <= reference:
        return args.speed_steps
    return max(min(30, args.speed_steps), args.speed_steps * reference // batch)


def plan_and_run(bench: Bench) -> None:
    args = bench.args
    small, large = args.batches[0], args.batches[-1]
    # Warm-up (not in the table): the first run in a process pays for CUDA's lazy initialisation and
    # tokenises the questions every later row reads.
    print("--- warm-up", flush=True)
    try:
        bench.peftqa_row("warm-up", small, min(args.speed_steps, 10), ALL_ON)
    except Exception:  # noqa: BLE001 - the rows themselves will say what fails
        traceback.print_exc()
    bench.busy.take()
    bench.run("Trainer baseline", lambda: bench.baseline_row(small), small)
    settings = dict(ALL_OFF)
    steps = args.speed_steps
    start = "peftqa with every lever off"
    bench.run(start, lambda: bench.peftqa_row(start, small, steps, dict(settings)), small)
    for label, added in LEVERS:
        settings.update(added)
        now = dict(settings)
        bench.run(label, lambda label=label, now=now: bench.peftqa_row(label, small, steps, now), small)
    for batch in args.batches[1:]:
        label = f"every lever, batch {batch}"
        bench.run(label, lambda b=batch, label=label: bench.peftqa_row(label, b, speed_steps(args, b), ALL_ON), batch)
    if args.no_f1:
        return
    large_lr = args.large_lr or _default_lr() * math.sqrt(large / small)
    label = f"1 epoch, every lever, batch {large} (lr {large_lr:g})"
    epoch_large = bench.run(label, lambda: bench.peftqa_row(label, large, None, ALL_ON, lr=large_lr), large)
    if large == small:
        return
    label = f"1 epoch, every lever, batch {small}"
    estimate = _epoch_estimate(bench, small, epoch_large)
    elapsed = time.monotonic() - bench.began
    if estimate is not None and elapsed + estimate > args.budget_s:
        note = f"skipped: ~{estimate:.0f} s estimated after {elapsed:.0f} s, over --budget-s {args.budget_s:g}"
        bench.rows.append(Row(label, small, note=note))
        bench.save()
        return
    bench.run(label, lambda: bench.peftqa_row(label, small, None, ALL_ON), small)


def _default_lr() -> float:
    from peftqa.methods import get_method

    return get_method("lora").default_lr


def _epoch_estimate(bench: Bench, batch: int, epoch_large: Row | None) -> float | None:
    """Seconds a whole epoch at `batch` would take: features / that batch's speed, plus the other epoch's
    evaluation and overhead (its wall time minus its training)."""
    speed = next((r for r in reversed(bench.rows) if r.batch == batch and r.settings == ALL_ON), None)
    if speed is None or not speed.train_features_per_second or epoch_large is None or not epoch_large.steps:
        return None
    features = epoch_large.steps * epoch_large.batch  # one epoch's features, to within the last batch
    overhead = (epoch_large.wall_seconds or 0) - features / (epoch_large.train_features_per_second or 1e9)
    return features / speed.train_features_per_second + max(overhead, 0)


# ---------------------------------------------------------------------------- table
def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _speed(value: float | None) -> str:
    """Features/s: whole numbers on a GPU, two decimals for the few a CPU smoke run reaches."""
    return _cell(value, ",.0f" if value is not None and value >= 100 else ".2f")


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"bench_gpu: LoRA r16 (all linear) on {result['model']}, max_length {result['max_length']}, "
        f"train {result['train_limit'] or 'all'} questions, dev {result['eval_limit'] or 'all'} for F1",
        f"machine: {result['machine']}; {result['seconds']:.0f} s in all",
        "",
        f"| {'row':<62} | batch | steps | train feats/s | ms/step | GPU busy % | EM    | F1    | note",
        f"|{'-' * 64}|------:|------:|--------------:|--------:|-----------:|------:|------:|-----",
    ]
    for row in result["rows"]:
        busy = "n/a" if row["gpu_busy_percent"] is None else f"{row['gpu_busy_percent']:.0f}"
        lines.append(
            f"| {row['label']:<62} | {row['batch']:>5} | {_cell(row['steps'], 'd'):>5} "
            f"| {_speed(row['train_features_per_second']):>13} | {_cell(row['ms_per_step'], '.1f'):>7} "
            f"| {busy:>10} | {_cell(row['exact_match'], '.2f'):>5} | {_cell(row['f1'], '.2f'):>5} | {row['note']}"
        )
    return "\n".join(lines)


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(f"bench_gpu: stopped by signal {signum}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # A run cut short by `timeout` (SIGTERM) still prints and saves the rows it measured.
    previous = signal.signal(signal.SIGTERM, _stop)
    with tempfile.TemporaryDirectory() as scratch:
        bench = Bench(args, Path(scratch))
        try:
            plan_and_run(bench)
        finally:
            signal.signal(signal.SIGTERM, previous)
            bench.close()
            bench.save()
            print("\n" + format_table(bench.result()), flush=True)


if __name__ == "__main__":
    main()
