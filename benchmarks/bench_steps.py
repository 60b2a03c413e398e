"""Training steps of both recipes interleaved in one process, in fp32 and bf16, and where a step's
time goes: the fairest ratio on a shared machine, and the next lever to pull.

    python -m benchmarks.bench_steps                     # minilm-l6, 20 steps of 16 features each
    python -m benchmarks.bench_steps --steps 40 --batch-size 32
    python -m benchmarks.bench_steps --precisions fp32   # one precision only

Step i of peftqa (LoRA on every linear layer, dropout 0, a length-grouped batch padded to its
longest row) runs right after step i of the baseline recipe (LoRA on query/value, dropout 0.1,
every window padded to max_length), on the same train questions, so a load that comes and goes
weighs on both alike; each recipe runs once per precision (bf16: autocast around forward and
backward, fp32 weights and AdamW). bench_train measures the whole runs (with Trainer) and dev F1;
this one only the step: forward, backward, clipping, AdamW.

Then a few more peftqa steps per precision run under torch.profiler, and each step's CPU time is
split into matrix products, attention, the rest of the forward and backward (norms, GELU, copies),
clipping and the optimizer, with the time to build the batch (`collate`) beside it. peftqa's bf16
steps run with its bf16 levers (attention in fp32, levers.fp32_attention), the baseline's with plain
autocast, as Trainer's `bf16` runs them.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from benchmarks.common import machine_description, print_table
from peftqa.hardware import cpu_bf16_units


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per recipe (after one warm-up step)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--questions", type=int, default=2000, help="train questions the batches come from")
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--data-dir", default=None, help="SQuAD folder; default PEFTQA_DATA_DIR")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16 (default both)")
    parser.add_argument("--profile-steps", type=int, default=4, help="peftqa steps profiled per precision (0: none)")
    args = parser.parse_args(argv)
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not args.precisions or any(p not in ("fp32", "bf16") for p in args.precisions):
        parser.error(f"--precisions takes fp32, bf16; got {args.precisions}")
    return args


def _recipes(args: argparse.Namespace):
    """(name, model, batches as tensor dicts) for peftqa and the baseline, over the same questions."""
    import torch
    from transformers import default_data_collator

    from benchmarks.baseline_trainer import BaselineSettings, baseline_model, prepare_train_features
    from peftqa.data import load_squad, split_path
    from peftqa.features.batches import collate, length_grouped_batches
    from peftqa.features.windows import build_features
    from peftqa.methods import get_method
    from peftqa.model.backbone import load_qa_model, load_tokenizer, resolve_model
    from peftqa.settings.run_config import RunConfig

    path = resolve_model(args.model)
    tokenizer = load_tokenizer(path)
    examples = load_squad(split_path(args.data_dir, "train"), args.questions, shuffle_seed=42)
    count = args.steps + 1
    cpu = torch.device("cpu")

    features = build_features(examples, tokenizer, args.max_length, 128)
    rows = length_grouped_batches(features.lengths, args.batch_size, seed=0)[:count]
    began = time.perf_counter()
    ours_batches = [collate(features, r, tokenizer.pad_token_id, cpu) for r in rows]
    collate_ms = 1000 * (time.perf_counter() - began) / len(rows)
    spec = get_method("lora")

    settings = BaselineSettings(max_length=args.max_length, batch_size=args.batch_size)
    padded = prepare_train_features(examples, tokenizer, settings)
    order = np.random.default_rng(0).permutation(len(padded))  # Trainer's random sampler
    base_batches = [
        default_data_collator([padded[i] for i in order[k * args.batch_size : (k + 1) * args.batch_size]])
        for k in range(count)
    ]
    recipes = []
    for precision in args.precisions:
        torch.manual_seed(0)
        ours = spec.apply(load_qa_model(path, RunConfig().optimisation.dropout), spec.make_options({}))
        recipes.append((f"peftqa {precision}", precision, ours, ours_batches))
        recipes.append((f"baseline {precision}", precision, baseline_model(path, settings), base_batches))
    return recipes, collate_ms


def _step(model, optimizer, batch, precision: str, recipe: str) -> None:
    """One step; peftqa's bf16 step with its levers (attention in fp32 on a CPU), as train() runs it."""
    import contextlib

    import torch

    from peftqa.training.levers.fp32_attention import fp32_attention

    levers = fp32_attention() if precision == "bf16" and recipe.startswith("peftqa") else contextlib.nullcontext()
    with levers, torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# Where a step's CPU time goes: profiler event names (self time) by share of the step, first match wins.
PROFILE_PARTS = (
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")),
    ("attention", ("scaled_dot_product", "flash_attention", "aten::_softmax", "aten::softmax")),
    ("optimizer (AdamW)", ("adam", "Optimizer.step", "Optimizer.zero_grad")),
    ("clipping", ("clip_grad", "_foreach_norm", "aten::norm", "linalg_vector_norm", "_foreach_mul")),
)


def profile_steps(model, optimizer, batches, precision: str) -> dict[str, float]:
    """Milliseconds per step by PROFILE_PARTS (and "rest of forward/backward"), from torch.profiler's
    self CPU times over `batches`."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for batch in batches:
            _step(model, optimizer, batch, precision, "peftqa")
    parts = {name: 0.0 for name, _ in PROFILE_PARTS}
    rest = 0.0
    for event in profiler.key_averages():
        if event.key.startswith("ProfilerStep"):
            continue
        lower = event.key.lower()
        part = next((name for name, keys in PROFILE_PARTS if any(k.lower() in lower for k in keys)), None)
        if part is None:
            rest += event.self_cpu_time_total
        else:
            parts[part] += event.self_cpu_time_total
    parts["rest of forward/backward"] = rest
    return {name: value / 1000 / len(batches) for name, value in parts.items()}


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    recipes, collate_ms = _recipes(args)
    optimizers = {}
    for name, _, model, _ in recipes:
        model.train()
        optimizers[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    timings = {name: {"wall": 0.0, "cpu": 0.0, "features": 0, "tokens": 0, "padded": 0} for name, *_ in recipes}
    for step in range(args.steps + 1):
        for name, precision, model, batches in recipes:
            wall, cpu = time.perf_counter(), time.process_time()
            _step(model, optimizers[name], batches[step], precision, name)
            if step == 0:
                continue  # warm-up: first-call allocations and kernel selection
            timing = timings[name]
            timing["wall"] += time.perf_counter() - wall
            timing["cpu"] += time.process_time() - cpu
            timing["features"] += len(batches[step]["input_ids"])
            timing["tokens"] += int(batches[step]["attention_mask"].sum())
            timing["padded"] += batches[step]["attention_mask"].numel()
    load = os.getloadavg()[0]
    print(
        f"\nbench_steps: {args.steps} interleaved training steps per recipe and precision, batch "
        f"{args.batch_size}, max_length {args.max_length}, {args.model}\nmachine: {machine_description()}; "
        f"bf16 units: {', '.join(cpu_bf16_units() or []) or 'none (bf16 is emulated)'} "
        f"(load average {load:.1f} at the end)"
    )
    for precision in args.precisions:
        ours, base = timings[f"peftqa {precision}"], timings[f"baseline {precision}"]
        rows = [
            ("train features/s", ours["features"] / ours["wall"], base["features"] / base["wall"], ".2f"),
            ("train real tokens/s", ours["tokens"] / ours["wall"], base["tokens"] / base["wall"], ".0f"),
            ("train features per CPU second", ours["features"] / ours["cpu"], base["features"] / base["cpu"], ".2f"),
            ("ms per step", 1000 * ours["wall"] / args.steps, 1000 * base["wall"] / args.steps, ".0f"),
            ("padded tokens per feature", ours["padded"] / ours["features"], base["padded"] / base["features"], ".1f"),
            ("real tokens per feature", ours["tokens"] / ours["features"], base["tokens"] / base["features"], ".1f"),
        ]
        print_table(f"{precision}:", rows)
    if len(args.precisions) == 2:
        for recipe in ("peftqa", "baseline"):
            fp32, bf16 = timings[f"{recipe} fp32"], timings[f"{recipe} bf16"]
            speedup = (bf16["features"] / bf16["wall"]) / (fp32["features"] / fp32["wall"])
            print(f"{recipe}: bf16 / fp32 step throughput {speedup:.2f}x")
    if args.profile_steps:
        print(
            f"\nwhere a peftqa step's CPU time goes (torch.profiler, {args.profile_steps} steps; ms per step, share):"
        )
        profiles = {}
        for name, precision, model, batches in recipes:
            if name.startswith("peftqa"):
                profiles[precision] = profile_steps(
                    model, optimizers[name], batches[1 : 1 + args.profile_steps], precision
                )
        print(f"{'part':<28}" + "".join(f"{p:>18}" for p in profiles))
        for part in next(iter(profiles.values())):
            cells = ""
            for values in profiles.values():
                cells += f"{values[part]:>10.0f} {100 * values[part] / sum(values.values()):>5.1f}% "
            print(f"{part:<28}{cells}")
        print(f"{'batch building (collate)':<28}{collate_ms:>10.1f} ms per batch, outside the step")


if __name__ == "__main__":
    main()
