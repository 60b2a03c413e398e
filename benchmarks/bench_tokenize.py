"""Tokenising SQuAD train: peftqa (cold, then from its cache) vs the plain recipe's feature preparation.

    python -m benchmarks.bench_tokenize                    # all 87,599 train questions, max_length 384
    python -m benchmarks.bench_tokenize --questions 10000

peftqa tokenises each distinct context once and cuts the windows itself (features.build_features);
the baseline is run_qa.py's prepare_train_features: every (question, context) pair through the
tokenizer's truncation, padded to max_length, in one process, as the Trainer recipe runs it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_description, print_table, run_arm, write_result

MODULE = "benchmarks.bench_tokenize"
FIGURES = (
    ("tokenise seconds (cold)", "cold_seconds", ".2f"),
    ("tokenise CPU seconds (cold)", "cold_cpu_seconds", ".2f"),
    ("from cache seconds", "cached_seconds", ".2f"),
    ("features", "features", ".0f"),
    ("peak resident memory MiB", "peak_rss_mib", ".0f"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=0, help="train questions (0: all)")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--model", default="minilm-l6", help="whose tokenizer (bert-base-uncased vocabulary)")
    parser.add_argument("--data-dir", default=None, help="SQuAD folder; default PEFTQA_DATA_DIR")
    parser.add_argument("--skip-baseline", action="store_true", help="peftqa only (the baseline takes minutes)")
    parser.add_argument("--arm", choices=("peftqa", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _timed(function, *args) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process, its tokenizer threads included)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _arm(args: argparse.Namespace) -> dict:
    from peftqa.data import load_squad, md5_of, split_path
    from peftqa.model.backbone import load_tokenizer, resolve_model

    path = split_path(args.data_dir, "train")
    examples = load_squad(path, args.questions or None, shuffle_seed=42)
    tokenizer = load_tokenizer(resolve_model(args.model))
    if args.arm == "baseline":
        from benchmarks.baseline_trainer import BaselineSettings, prepare_train_features

        settings = BaselineSettings(max_length=args.max_length, doc_stride=args.doc_stride)
        features, wall, cpu = _timed(prepare_train_features, examples, tokenizer, settings)
        return {"cold_seconds": wall, "cold_cpu_seconds": cpu, "features": len(features)}

    from peftqa.features.cache import load_or_build_features

    digest = md5_of(path)
    with tempfile.TemporaryDirectory() as scratch:
        build = (examples, tokenizer, args.max_length, args.doc_stride, digest, Path(scratch))
        (features, cached), wall, cpu = _timed(load_or_build_features, *build)
        assert not cached
        (_, cached), cached_wall, _ = _timed(load_or_build_features, *build)
        assert cached
    return {"cold_seconds": wall, "cold_cpu_seconds": cpu, "cached_seconds": cached_wall, "features": len(features)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.arm:
        write_result(args.out, _arm(args))
        return
    forwarded = ["--questions", str(args.questions), "--max-length", str(args.max_length)]
    forwarded += ["--doc-stride", str(args.doc_stride), "--model", args.model]
    forwarded += ["--data-dir", args.data_dir] if args.data_dir else []
    ours = run_arm(MODULE, "peftqa", forwarded)
    base = None if args.skip_baseline else run_arm(MODULE, "baseline", forwarded)
    shown = [r for r in (ours, base) if r]
    title = (
        f"bench_tokenize: {args.questions or 'all'} SQuAD train questions, max_length {args.max_length}, "
        f"stride {args.doc_stride}, tokenizer of {args.model}\nmachine: {machine_description()} "
        f"(load average {min(r['load_average_before'] for r in shown):.1f}-"
        f"{max(r['load_average_after'] for r in shown):.1f}; TOKENIZERS_PARALLELISM="
        f"{os.environ.get('TOKENIZERS_PARALLELISM', 'unset')})"
    )
    rows = [(name, ours.get(key), (base or {}).get(key), fmt) for name, key, fmt in FIGURES]
    print_table(title, rows)


if __name__ == "__main__":
    main()
