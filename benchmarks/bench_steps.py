"""Training steps of both recipes interleaved in one process: the fairest ratio on a shared machine.

    python -m benchmarks.bench_steps                     # minilm-l6, 20 steps of 16 features each
    python -m benchmarks.bench_steps --steps 40 --batch-size 32

Step i of peftqa (LoRA on every linear layer, dropout 0, a length-grouped batch padded to its
longest row) runs right after step i of the baseline recipe (LoRA on query/value, dropout 0.1,
every window padded to max_length), on the same train questions, so a load that comes and goes
weighs on both alike. bench_train measures the whole runs (with Trainer) and dev F1; this one
only the step: forward, backward, clipping, AdamW.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from benchmarks.common import machine_description, print_table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per recipe (after one warm-up step)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--questions", type=int, default=2000, help="train questions the batches come from")
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--data-dir", default=None, help="SQuAD folder; default PEFTQA_DATA_DIR")
    return parser.parse_args(argv)


def _recipes(args: argparse.Namespace):
    """(name, model, batches as tensor dicts) for peftqa and the baseline, over the same questions."""
    import torch
    from transformers import default_data_collator

    from benchmarks.baseline_trainer import BaselineSettings, baseline_model, prepare_train_features
    from peftqa.backbone import load_qa_model, load_tokenizer, resolve_model
    from peftqa.batches import collate, length_grouped_batches
    from peftqa.config import RunConfig
    from peftqa.data import load_squad, split_path
    from peftqa.features import build_features
    from peftqa.methods import get_method

    path = resolve_model(args.model)
    tokenizer = load_tokenizer(path)
    examples = load_squad(split_path(args.data_dir, "train"), args.questions, shuffle_seed=42)
    count = args.steps + 1
    cpu = torch.device("cpu")

    features = build_features(examples, tokenizer, args.max_length, 128)
    rows = length_grouped_batches(features.lengths, args.batch_size, seed=0)[:count]
    ours_batches = [collate(features, r, tokenizer.pad_token_id, cpu) for r in rows]
    spec = get_method("lora")
    torch.manual_seed(0)
    ours = spec.apply(load_qa_model(path, RunConfig().dropout), spec.make_options({}))

    settings = BaselineSettings(max_length=args.max_length, batch_size=args.batch_size)
    padded = prepare_train_features(examples, tokenizer, settings)
    order = np.random.default_rng(0).permutation(len(padded))  # Trainer's random sampler
    base_batches = [
        default_data_collator([padded[i] for i in order[k * args.batch_size : (k + 1) * args.batch_size]])
        for k in range(count)
    ]
    base = baseline_model(path, settings)
    return [("peftqa", ours, ours_batches), ("baseline", base, base_batches)]


def _step(model, optimizer, batch) -> None:
    import torch

    model(**batch).loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    recipes = _recipes(args)
    optimizers = {}
    for name, model, _ in recipes:
        model.train()
        optimizers[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    timings = {name: {"wall": 0.0, "cpu": 0.0, "features": 0, "tokens": 0, "padded": 0} for name, _, _ in recipes}
    for step in range(args.steps + 1):
        for name, model, batches in recipes:
            wall, cpu = time.perf_counter(), time.process_time()
            _step(model, optimizers[name], batches[step])
            if step == 0:
                continue  # warm-up: first-call allocations and kernel selection
            timing = timings[name]
            timing["wall"] += time.perf_counter() - wall
            timing["cpu"] += time.process_time() - cpu
            timing["features"] += len(batches[step]["input_ids"])
            timing["tokens"] += int(batches[step]["attention_mask"].sum())
            timing["padded"] += batches[step]["attention_mask"].numel()
    ours, base = timings["peftqa"], timings["baseline"]
    load = os.getloadavg()[0]
    title = (
        f"bench_steps: {args.steps} interleaved training steps per recipe, batch {args.batch_size}, "
        f"max_length {args.max_length}, {args.model}\nmachine: {machine_description()} "
        f"(load average {load:.1f} at the end)"
    )
    rows = [
        ("train features/s", ours["features"] / ours["wall"], base["features"] / base["wall"], ".2f"),
        ("train real tokens/s", ours["tokens"] / ours["wall"], base["tokens"] / base["wall"], ".0f"),
        ("train features per CPU second", ours["features"] / ours["cpu"], base["features"] / base["cpu"], ".2f"),
        ("padded tokens per feature", ours["padded"] / ours["features"], base["padded"] / base["features"], ".1f"),
        ("real tokens per feature", ours["tokens"] / ours["features"], base["tokens"] / base["features"], ".1f"),
    ]
    print_table(title, rows)


if __name__ == "__main__":
    main()
