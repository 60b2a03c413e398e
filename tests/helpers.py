"""Helpers several test modules share: finished runs and sweeps written by hand (no training), so every
figure and verdict a report gives is known."""

from __future__ import annotations

from peftqa import files
from peftqa.sweep import write_sweep

# What sweep.json says about the questions its trials were scored on.
SWEEP_QUESTIONS = {
    "eval_split": "validation",
    "eval_limit": 200,
    "validation_questions": 300,
    "base_config": {"eval_sample": "random", "eval_seed": 0},
}


def fake_sweep(folder):
    trials = [
        {"number": i, "state": "COMPLETE", "params": {"lr": lr}, "f1": f1, "exact_match": f1 / 2}
        for i, (lr, f1) in enumerate([(1e-4, 10.0), (3e-4, 30.0), (1e-3, 20.0)])
    ]
    write_sweep(
        folder,
        {
            "method": "lora",
            "train_questions": 300,
            "epochs": 1,
            "trials": trials,
            "best": trials[1],
            "edge_warnings": [],
            **SWEEP_QUESTIONS,
        },
    )
    return folder


DEVICE = "cpu: x86_64, 2 threads"


def dev_examples(data_dir):
    from peftqa.data import load_squad

    return load_squad(data_dir / "dev-v1.1.json")


def fake_run(folder, data_dir, method, right, seed=42, lr=1e-3, scores_file=True, trainable=1000, size=4096):
    """A finished run whose answer to dev question k is right (the gold town) when right[k], else wrong."""
    import json

    from peftqa.data import QuestionChoice
    from peftqa.inference import run_folder as runs

    examples = dev_examples(data_dir)
    assert len(right) == len(examples)
    predictions = {e.id: e.answers[0] if ok else "founded" for e, ok in zip(examples, right, strict=True)}
    rows = [
        {"id": e.id, "title": e.title, "exact_match": 100.0 * ok, "f1": 100.0 * ok, "prediction": predictions[e.id]}
        for e, ok in zip(examples, right, strict=True)
    ]
    f1 = 100.0 * sum(right) / len(right)
    for needed in ("model" if method == "full" else "adapter", "tokenizer"):
        (folder / needed).mkdir(parents=True, exist_ok=True)
    config = {"method": method, "model": "m", "data_dir": str(data_dir), "seed": seed, "lr": lr, "epochs": 1.0}
    config |= {"max_length": 128, "batch_size": 4, "output_dir": str(folder), "eval_split": "dev", "eval_limit": None}
    settings = {"config": config, "base_model_path": "m", "learning_rate": lr, "train_questions": 300, "device": DEVICE}
    settings["eval_description"] = QuestionChoice().describe(len(examples))
    files.write_json_atomic(folder / runs.RUN_JSON, settings)
    files.write_json_atomic(folder / runs.PREDICTIONS_JSON, predictions)
    (folder / runs.SCORES_JSONL).unlink(missing_ok=True)
    if scores_file:
        (folder / runs.SCORES_JSONL).write_text("".join(json.dumps(row) + "\n" for row in rows))
    metrics = {"method": method, "model": "m", "exact_match": f1, "f1": f1, "trainable_params": trainable}
    metrics |= {"trainable_percent": 1.0, "artifact_bytes": size, "train_seconds": 1.0}
    files.write_json_atomic(folder / runs.METRICS_JSON, {**metrics, "train_features_per_second": 1.0, "history": []})
    return folder
