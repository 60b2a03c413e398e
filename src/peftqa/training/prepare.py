"""What a run settles before its first step: its questions and their features (`prepare_data`, built
or cached), its folder, its seeded model with the method applied, its optimiser and schedule, and
the settings run.json records."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peftqa import hardware
from peftqa.data import (
    Example,
    describe_source,
    eval_questions,
    has_unanswerable,
    md5_of,
    question_source,
    threshold_questions,
    train_questions,
)
from peftqa.errors import PeftqaError
from peftqa.features.cache import load_or_build_features
from peftqa.features.windows import FeatureSet
from peftqa.inference import run_folder
from peftqa.inference.evaluate import NullRule
from peftqa.inference.forward import model_device
from peftqa.methods import MethodSpec, get_method
from peftqa.methods.registry import is_qa_head
from peftqa.model.backbone import load_qa_model
from peftqa.settings.run_config import RunConfig
from peftqa.training.levers import SpeedLevers


@dataclass
class TrainingData:
    """The questions a run trains and is scored on, their features, and where they came from."""

    train_examples: list[Example]
    eval_examples: list[Example]  # the questions scored: dev, or held-out training articles (config.data.eval_split)
    train_features: FeatureSet
    eval_features: FeatureSet
    data_md5: dict[str, str]  # "train" and the scored split -> the MD5 of the file read (a `datasets` source: none)
    tokenize_seconds: float
    features_from_cache: bool
    # "train" and the scored split -> source, format, fingerprint and question counts (data.describe_source)
    data_files: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Data with unanswerable questions (SQuAD 2.0): how "no answer" is decided; None on SQuAD v1.1 data.
    null_rule: NullRule | None = None
    threshold_description: str | None = None  # which questions the null threshold is chosen on
    # --eval-every-steps: the held-out training articles scored while training (never dev), and in words.
    validation_examples: list[Example] | None = None
    validation_features: FeatureSet | None = None
    validation_description: str | None = None


def prepare_data(config: RunConfig, tokenizer: Any, log: Callable[[str], None] = print) -> TrainingData:
    """Choose the training and scored questions (config.questions) and build (or load) their features.

    When the data has questions without an answer and no --null-threshold is given, a dev-scored run
    holds whole training articles out of training and chooses its threshold on them; with
    --eval-every-steps it holds them out to score them while training (early stopping). A run scored
    on the validation split is validated on its own scored questions.
    """
    choice = config.questions
    validating = config.tracking.eval_every_steps is not None
    roles = {"train": "train", choice.eval_split: "train" if choice.eval_split == "validation" else "dev"}
    sources = {split: question_source(config.data.data_dir, choice, role) for split, role in roles.items()}
    data_files = {split: describe_source(sources[split], roles[split]) for split in sources}
    with_negative = any(has_unanswerable(sources[split], roles[split]) for split in sources)
    if config.scoring.null_threshold is not None and not with_negative:
        raise PeftqaError(
            "--null-threshold applies to data with unanswerable questions (SQuAD 2.0); "
            + " and ".join(str(source) for source in dict.fromkeys(sources.values()))
            + " have none"
        )
    choose_threshold = with_negative and config.scoring.null_threshold is None
    if (choose_threshold or validating) and choice.eval_split == "dev":
        choice = dataclasses.replace(choice, hold_out=True)
    # A seeded random sample: the first N questions would cover only the first few articles.
    train_examples = train_questions(config.data.data_dir, choice)
    eval_examples, _ = eval_questions(config.data.data_dir, choice)
    held_out = threshold_questions(config.data.data_dir, choice) if choice.hold_out else None
    tune_examples = held_out if choose_threshold else None
    prints = {split: described["fingerprint"] for split, described in data_files.items()}
    data_md5 = {split: md5_of(Path(source)) for split, source in sources.items() if Path(source).is_file()}
    began = time.perf_counter()
    train_features, train_cached = load_or_build_features(
        train_examples, tokenizer, config.scoring.max_length, config.scoring.doc_stride, prints["train"]
    )
    eval_features, eval_cached = load_or_build_features(
        eval_examples, tokenizer, config.scoring.max_length, config.scoring.doc_stride, prints[choice.eval_split]
    )
    held_out_features = None
    if held_out is not None:
        held_out_features, _ = load_or_build_features(
            held_out, tokenizer, config.scoring.max_length, config.scoring.doc_stride, prints["train"]
        )
    null_rule, described = None, None
    if with_negative:
        tune_features = held_out_features if tune_examples is not None else None
        if tune_examples is not None:
            described = choice.threshold_choice.describe(len(tune_examples))
        elif config.scoring.null_threshold is None:
            described = choice.describe(len(eval_examples))  # a validation run: its own held-out questions
        null_rule = NullRule(config.scoring.null_threshold, tune_examples, tune_features)
    seconds = time.perf_counter() - began
    validation: tuple[list[Example] | None, FeatureSet | None, str | None] = (None, None, None)
    if validating and held_out is not None:
        validation = (held_out, held_out_features, choice.threshold_choice.describe(len(held_out)))
    elif validating:
        validation = (eval_examples, eval_features, choice.describe(len(eval_examples)))
    log(
        f"data: {len(train_examples)} train questions -> {len(train_features)} features, scored on "
        f"{choice.describe(len(eval_examples))} -> {len(eval_features)} features "
        f"({'from cache' if train_cached and eval_cached else 'tokenised'} in {seconds:.1f} s)"
        + (f"; null threshold chosen on {described}" if described else "")
        + (f"; validated while training on {validation[2]}" if validating else "")
    )
    return TrainingData(
        train_examples,
        eval_examples,
        train_features,
        eval_features,
        data_md5,
        seconds,
        train_cached and eval_cached,
        data_files,
        null_rule,
        described,
        *validation,
    )


def default_output_dir(config: RunConfig) -> Path:
    """Where a run goes without --output-dir: runs/<method>-<model>-<time>."""
    model_name = Path(config.model).name or "model"
    return Path("runs") / f"{config.method}-{model_name}-{datetime.now():%Y%m%d-%H%M%S}"


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's generators: the head's initialisation, the adapter, dropout."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(
    config: RunConfig, spec: MethodSpec, base_path: str, device: torch.device, log: Callable[[str], None] = print
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The base QA model with the method applied, seeded first, on `device`; and its parameter counts."""
    seed_everything(config.optimisation.seed)
    model = spec.apply(
        load_qa_model(base_path, config.optimisation.dropout), spec.make_options(config.method_options)
    ).to(device)
    parameters = count_parameters(model)
    log(
        f"{config.method} on {config.model}: {parameters['trainable_params']:,} trainable of "
        f"{parameters['total_params']:,} parameters ({parameters['trainable_percent']:.2f}%), "
        f"lr {config.learning_rate:g}, QA head lr {config.head_learning_rate:g}"
    )
    return model, parameters


def build_optimizer(model: torch.nn.Module, config: RunConfig, total_steps: int) -> tuple[Any, Any]:
    """AdamW with the QA head at its own rate (config.head_learning_rate), the method's tensors at its
    rate times MethodSpec.lr_scales, and no decay on biases, LayerNorms and MethodSpec.no_decay; linear
    warm-up then linear decay to zero, each group from its own peak.

    One group per (rate, decay) in the order the parameters come, the method's before the head's: the
    same model always gives the same groups, so a checkpoint's optimiser state loads back (--resume),
    and the first group is at the method's rate (what tracking reports)."""
    spec = get_method(config.method)
    scales = [(re.compile(pattern), scale) for pattern, scale in spec.lr_scales.items()]
    plain = re.compile(spec.no_decay) if spec.no_decay else None
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in sorted(named, key=lambda item: is_qa_head(item[0])):  # stable: the head last
        if is_qa_head(name):
            lr = config.head_learning_rate
        else:
            lr = config.learning_rate * next((s for pattern, s in scales if pattern.search(name)), 1.0)
        decayed = parameter.ndim >= 2 and "LayerNorm" not in name and not (plain and plain.search(name))
        groups.setdefault((lr, config.optimisation.weight_decay if decayed else 0.0), []).append(parameter)
    # Fused AdamW updates every tensor in one kernel, on CUDA and on a CPU; without it PyTorch loops
    # over the tensors, which on a CPU costs full fine-tuning several times its update
    # (docs/results/2026-12-01-bf16-cpu.md).
    use_fused = model_device(model).type in ("cuda", "cpu")
    optimizer = torch.optim.AdamW(
        [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()],
        lr=config.learning_rate,
        fused=use_fused or None,
    )
    warmup = int(config.optimisation.warmup_fraction * total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def count_parameters(model: torch.nn.Module) -> dict[str, Any]:
    """Trainable and total parameters of the model the method made, as metrics.json records them."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": trainable, "total_params": total, "trainable_percent": 100.0 * trainable / total}


def run_settings(
    config: RunConfig, base_path: str, data: TrainingData, device: torch.device, levers: SpeedLevers
) -> dict[str, Any]:
    """What run.json records before the first step: the settings, the data, where it trains and in what
    arithmetic (the precision used and why)."""
    spec = get_method(config.method)
    details = spec.run_details(spec.make_options(config.method_options)) if spec.run_details else None
    return {
        "config": config.to_dict(),
        **({"method_details": details} if details is not None else {}),
        "learning_rate": config.learning_rate,
        "head_learning_rate": config.head_learning_rate,
        "base_model_path": base_path,
        "data_md5": data.data_md5,
        "data_files": data.data_files,
        **({"null_threshold_chosen_on": data.threshold_description} if data.threshold_description else {}),
        **({"validated_on": data.validation_description} if data.validation_description else {}),
        "train_questions": len(data.train_examples),
        "train_features": len(data.train_features),
        "eval_questions": len(data.eval_examples),
        "eval_features": len(data.eval_features),
        # Which questions every figure of this run is computed on, in words and as a fingerprint.
        "eval_description": config.questions.describe(len(data.eval_examples)),
        "eval_ids_sha256": hashlib.sha256("\n".join(e.id for e in data.eval_examples).encode()).hexdigest(),
        "versions": run_folder.package_versions(),
        "git_commit": run_folder.git_commit(),
        "device": hardware.device_description(device),
        "levers": levers.to_dict(),
        "started": datetime.now().isoformat(timespec="seconds"),
    }
