"""How many answers the bf16 mode (--fast) changes: merged fp32 and merged bf16 against `evaluate`.

    python -m benchmarks.bench_serve_agreement --runs runs/quick-lora runs/quick-ia3

On each run's own dev sample, the answers of the merged fp32 model and of the merged model under bf16
autocast (--fast), against those of `evaluate` on the run as trained, with EM/F1 of both.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.serve_common import runs_to_measure


def measure_agreement(run_dir: str, data_dir: str | None) -> dict:
    """Answers of the merged fp32 and merged bf16 models against `evaluate`'s on the run's dev sample."""
    from peftqa.data import gold_answers
    from peftqa.export.verify import merge_model
    from peftqa.inference import run_folder
    from peftqa.inference.evaluate import evaluate, run_questions
    from peftqa.inference.forward import predict_logits
    from peftqa.inference.postprocess import best_answers, postprocess
    from peftqa.scoring.metrics import compute_metrics

    loaded = run_folder.load_run(run_dir)
    config = loaded.config
    examples, features = run_questions(config, loaded.tokenizer, data_dir)
    pad = loaded.tokenizer.pad_token_id
    reference = evaluate(loaded.model, examples, features, pad, config.scoring).predictions
    merged = merge_model(loaded.model)
    merged_answers = evaluate(merged, examples, features, pad, config.scoring).predictions
    starts, ends, _ = predict_logits(merged, features, config.scoring.eval_batch_size, pad, bf16=True)
    bf16_answers = best_answers(
        postprocess(examples, features, starts, ends, config.scoring.n_best, config.scoring.max_answer_tokens)
    )
    gold = gold_answers(examples)
    return {
        "questions": len(examples),
        "merged_fp32_same": sum(merged_answers[q] == a for q, a in reference.items()),
        "bf16_same": sum(bf16_answers[q] == a for q, a in reference.items()),
        "fp32_metrics": compute_metrics(reference, gold),
        "bf16_metrics": compute_metrics(bf16_answers, gold),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=None, help="run directories (default: newest lora and ia3)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    run_dirs = runs_to_measure(args.runs)
    print("\nanswers identical to `evaluate` on each run's dev sample")
    for run_dir in run_dirs[:2]:
        found = measure_agreement(run_dir, args.data_dir)
        print(
            f"{Path(run_dir).name}: merged fp32 {found['merged_fp32_same']}/{found['questions']}, "
            f"merged bf16 {found['bf16_same']}/{found['questions']}; EM/F1 fp32 "
            f"{found['fp32_metrics']['exact_match']:.2f}/{found['fp32_metrics']['f1']:.2f}, bf16 "
            f"{found['bf16_metrics']['exact_match']:.2f}/{found['bf16_metrics']['f1']:.2f}"
        )


if __name__ == "__main__":
    main()
