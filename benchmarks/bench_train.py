"""Training throughput and dev F1: peftqa LoRA vs the plain Trainer recipe, same model and data, in
fp32 and in bf16 side by side.

    python -m benchmarks.bench_train                      # CPU: minilm-l6, 2,000 questions, 1 epoch
    python -m benchmarks.bench_train --train-questions 500 --dev-questions 200
    python -m benchmarks.bench_train --precisions fp32    # one precision only

Each precision trains both recipes: peftqa with `--precision fp32|bf16` (bf16 autocast around the
training steps, fp32 weights and evaluation), the baseline with Trainer's `bf16` flag (autocast in
training and prediction). On a CPU without bf16 units bf16 is emulated: the table says so. Training
on a GPU, lever by lever: benchmarks/bench_gpu.py.

Both arms train one epoch over the same seeded sample of train questions with the same batch
size, peak learning rate, warm-up and weight decay, then score the same dev questions with the
official EM/F1. They differ in what each recipe does: peftqa pads each batch only to its longest
row (length-grouped batches), adapts every linear layer, turns the model's dropout off (its default)
and runs its own loop; the baseline pads every window to max_length, adapts query/value with LoRA
dropout 0.1, keeps the checkpoint's dropout (0.1) and uses Trainer.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_description, ratio, run_arm, write_result

MODULE = "benchmarks.bench_train"
PRECISIONS = ("fp32", "bf16")
FIGURES = (
    # (printed name, key in an arm's result, format)
    ("train features/s", "train_features_per_second", ".1f"),
    ("train real tokens/s", "train_tokens_per_second", ".0f"),
    ("train features per CPU second", "train_features_per_cpu_second", ".2f"),
    ("train seconds", "train_seconds", ".1f"),
    ("dev F1", "f1", ".2f"),
    ("dev EM", "exact_match", ".2f"),
    ("eval features/s (incl. postprocess)", "eval_features_per_second", ".1f"),
    ("peak resident memory MiB", "peak_rss_mib", ".0f"),
    ("process CPU seconds", "cpu_seconds", ".0f"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-questions", type=int, default=2000, help="0: every train question")
    parser.add_argument("--dev-questions", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None, help="both arms' peak lr (default: peftqa's LoRA lr)")
    parser.add_argument("--rounds", type=int, default=1, help="2: peftqa, baseline, baseline, peftqa (fairer)")
    parser.add_argument("--data-dir", default=None, help="SQuAD folder; default PEFTQA_DATA_DIR")
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument(
        "--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16 (default both, side by side)"
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help=argparse.SUPPRESS)  # one arm's
    parser.add_argument("--arm", choices=("peftqa", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not args.precisions or any(p not in PRECISIONS for p in args.precisions):
        parser.error(f"--precisions takes {', '.join(PRECISIONS)}, got {args.precisions}")
    if args.lr is None:
        from peftqa.methods import get_method

        args.lr = get_method("lora").default_lr
    return args


def _peftqa_arm(args: argparse.Namespace) -> dict:
    from peftqa.settings.run_config import RunConfig
    from peftqa.training.loop import train

    steps = _StepCpuSeconds()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["PEFTQA_CACHE_DIR"] = str(Path(scratch) / "cache")  # cold features, like the baseline
        config = RunConfig.flat(
            method="lora",
            model=args.model,
            data_dir=args.data_dir,
            train_limit=args.train_questions or None,
            eval_limit=args.dev_questions,
            max_length=args.max_length,
            doc_stride=args.doc_stride,
            epochs=1.0,
            batch_size=args.batch_size,
            lr=args.lr,
            precision=args.precision,
            output_dir=str(Path(scratch) / "run"),
        )
        metrics = train(config, hooks=steps.hooks())
    keys = [key for _, key, _ in FIGURES if key in metrics]
    features = round(metrics["train_features_per_second"] * metrics["train_seconds"])
    per_cpu_second = steps.features / steps.seconds
    return {
        "train_features": features,
        "train_features_per_cpu_second": per_cpu_second,
        **{k: metrics[k] for k in keys},
    }


class _StepCpuSeconds:
    """CPU seconds of the training steps alone, a figure a shared machine disturbs less than wall time:
    from each step's end to the next's inside an epoch, as train()'s hooks report them (an epoch's
    evaluation and checkpoint fall between its last step and the next epoch's first), and the
    features those steps trained on."""

    def __init__(self) -> None:
        self.seconds, self.features = 0.0, 0
        self.last: tuple[float, int] | None = None  # (CPU time, features seen) at the previous step's end

    def hooks(self):
        from peftqa.training.loop import TrainHooks

        return TrainHooks(after_step=self._after_step, after_epoch=self._after_epoch)

    def _after_step(self, state) -> None:
        now, seen = time.process_time(), state.progress.train_features_seen
        if self.last is not None:
            self.seconds += now - self.last[0]
            self.features += seen - self.last[1]
        self.last = (now, seen)

    def _after_epoch(self, _entry) -> None:
        self.last = None


def _baseline_arm(args: argparse.Namespace) -> dict:
    from benchmarks.baseline_trainer import BaselineSettings, run_baseline
    from peftqa.data import QuestionChoice, eval_questions, train_questions
    from peftqa.model.backbone import resolve_model

    # The same questions peftqa's prepare_data picks: a seeded sample of train, a seeded sample of dev.
    settings = BaselineSettings(
        max_length=args.max_length,
        doc_stride=args.doc_stride,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        bf16=args.precision == "bf16",
        use_cpu=True,
    )
    choice = QuestionChoice(
        train_limit=args.train_questions or None, train_seed=settings.seed, eval_limit=args.dev_questions
    )
    train_examples = train_questions(args.data_dir, choice)
    dev_examples, _ = eval_questions(args.data_dir, choice)
    return run_baseline(resolve_model(args.model), train_examples, dev_examples, settings)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.arm:  # a child process: one arm, figures to --out
        write_result(args.out, _peftqa_arm(args) if args.arm == "peftqa" else _baseline_arm(args))
        return
    forwarded = [
        *("--train-questions", str(args.train_questions), "--dev-questions", str(args.dev_questions)),
        *("--batch-size", str(args.batch_size), "--max-length", str(args.max_length)),
        *("--doc-stride", str(args.doc_stride), "--lr", str(args.lr), "--model", args.model),
        *(["--data-dir", args.data_dir] if args.data_dir else []),
    ]
    # Alternating order (ABBA...), so a load that changes during the run weighs on both recipes alike.
    pairs = [("peftqa", "baseline"), ("baseline", "peftqa")]
    order = [
        (arm, precision)
        for r in range(args.rounds)
        for precision in args.precisions
        for arm in pairs[(r + args.precisions.index(precision)) % 2]
    ]
    results: dict[tuple[str, str], list[dict]] = {key: [] for key in order}
    for arm, precision in order:
        print(f"--- {arm} arm, {precision}", flush=True)
        results[(arm, precision)].append(run_arm(MODULE, arm, [*forwarded, "--precision", precision]))
    _report(args, results)


def _mean(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def _report(args: argparse.Namespace, results: dict[tuple[str, str], list[dict]]) -> None:
    from peftqa.hardware import cpu_bf16_units

    questions = args.train_questions or "all"
    loads = [
        value for rs in results.values() for r in rs for value in (r["load_average_before"], r["load_average_after"])
    ]
    units = ", ".join(cpu_bf16_units() or []) or "none: bf16 is emulated"
    print(
        f"\nbench_train: LoRA on {args.model}, {questions} train questions x 1 epoch, {args.dev_questions} dev "
        f"questions, batch {args.batch_size}, max_length {args.max_length}, lr {args.lr:g}\n"
        f"machine: {machine_description('cpu')}; bf16 units: {units} (load average {min(loads):.1f}-{max(loads):.1f})"
    )
    columns = [(arm, precision) for precision in args.precisions for arm in ("peftqa", "baseline")]
    header = "".join(f"{arm + ' ' + precision:>18}" for arm, precision in columns)
    ratios = "".join(f"{'ratio ' + precision:>12}" for precision in args.precisions)
    print(f"{'figure':<38}{header}{ratios}")
    for name, key, fmt in FIGURES:
        values = [_mean(results[column], key) for column in columns]
        cells = "".join(f"{format(v, fmt) if v is not None else '-':>18}" for v in values)
        shown = ""
        for precision in args.precisions:
            ours, base = _mean(results[("peftqa", precision)], key), _mean(results[("baseline", precision)], key)
            shown += f"{ratio(ours, base):>12}"
        print(f"{name:<38}{cells}{shown}")
    if set(args.precisions) == set(PRECISIONS):
        for arm in ("peftqa", "baseline"):
            fast = _mean(results[(arm, "bf16")], "train_features_per_second")
            slow = _mean(results[(arm, "fp32")], "train_features_per_second")
            print(f"{arm}: bf16 / fp32 training throughput {ratio(fast, slow)}")


if __name__ == "__main__":
    main()
