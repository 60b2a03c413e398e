"""The plain recipe peftqa is measured against: Hugging Face Trainer + peft LoRA on the query and
value projections, every window padded to max_length, the feature preparation and post-processing
of transformers' examples/pytorch/question-answering (run_qa.py, utils_qa.py), written compactly.

Only the scoring is shared with peftqa (the official EM/F1 in peftqa.scoring.metrics), so both arms are
judged by the same rule.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from peftqa.data import Example, gold_answers
from peftqa.scoring.metrics import compute_metrics

# Attention query/value layer names per architecture: the standard "LoRA on q/v" recipe.
QV_TARGETS = {"bert": ["query", "value"], "distilbert": ["q_lin", "v_lin"], "roberta": ["query", "value"]}


@dataclass
class BaselineSettings:
    """The recipe's knobs (the benchmark sets the same values for both arms where they exist)."""

    max_length: int = 384  # every window is padded to this
    doc_stride: int = 128
    batch_size: int = 16
    eval_batch_size: int = 64
    learning_rate: float = 5e-4
    epochs: float = 1.0
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1  # the usual peft example value
    bf16: bool = False  # the GPU recipe trains in bf16
    use_cpu: bool = True
    seed: int = 42
    n_best: int = 20
    max_answer_tokens: int = 30


def _tokenize_windows(examples: list[Example], tokenizer, settings: BaselineSettings):
    """Every (question, context) pair cut into overlapping windows, each padded to max_length."""
    return tokenizer(
        [e.question.lstrip() for e in examples],
        [e.context for e in examples],
        truncation="only_second",
        max_length=settings.max_length,
        stride=settings.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )


def prepare_train_features(examples: list[Example], tokenizer, settings: BaselineSettings) -> list[dict]:
    """run_qa.py's prepare_train_features: padded windows labelled with the first answer (CLS if out)."""
    tokenized = _tokenize_windows(examples, tokenizer, settings)
    features = []
    for i, offsets in enumerate(tokenized["offset_mapping"]):
        input_ids = tokenized["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id)
        sequence_ids = tokenized.sequence_ids(i)
        example = examples[tokenized["overflow_to_sample_mapping"][i]]
        start_char = example.answer_starts[0]
        end_char = start_char + len(example.answers[0])
        token_start = sequence_ids.index(1)
        token_end = len(input_ids) - 1 - sequence_ids[::-1].index(1)
        if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
            start_position = end_position = cls_index
        else:
            while token_start < len(offsets) and offsets[token_start][0] <= start_char:
                token_start += 1
            while offsets[token_end][1] >= end_char:
                token_end -= 1
            start_position, end_position = token_start - 1, token_end + 1
        feature = {name: tokenized[name][i] for name in tokenizer.model_input_names if name in tokenized}
        features.append({**feature, "start_positions": start_position, "end_positions": end_position})
    return features


def prepare_validation_features(examples: list[Example], tokenizer, settings: BaselineSettings):
    """run_qa.py's prepare_validation_features: padded windows, example ids, offsets None outside the context."""
    tokenized = _tokenize_windows(examples, tokenizer, settings)
    inputs, example_ids, offset_mappings = [], [], []
    for i, offsets in enumerate(tokenized["offset_mapping"]):
        sequence_ids = tokenized.sequence_ids(i)
        inputs.append({name: tokenized[name][i] for name in tokenizer.model_input_names if name in tokenized})
        example_ids.append(tokenized["overflow_to_sample_mapping"][i])
        offset_mappings.append([o if sequence_ids[k] == 1 else None for k, o in enumerate(offsets)])
    return inputs, example_ids, offset_mappings


def postprocess_qa_predictions(examples, example_ids, offset_mappings, start_logits, end_logits, settings) -> dict:
    """utils_qa.py's postprocess_qa_predictions (no null answer): the best valid span per example."""
    by_example: dict[int, list[int]] = {}
    for feature_index, example_index in enumerate(example_ids):
        by_example.setdefault(example_index, []).append(feature_index)
    predictions = {}
    for example_index, example in enumerate(examples):
        best_score, best_text = -np.inf, ""
        for feature_index in by_example.get(example_index, []):
            starts, ends = start_logits[feature_index], end_logits[feature_index]
            offsets = offset_mappings[feature_index]
            for s in np.argsort(starts)[-1 : -settings.n_best - 1 : -1]:
                for e in np.argsort(ends)[-1 : -settings.n_best - 1 : -1]:
                    # Out of the context, end before start, or longer than any answer: skipped.
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > settings.max_answer_tokens:
                        continue
                    if starts[s] + ends[e] > best_score:
                        best_score, best_text = starts[s] + ends[e], example.context[offsets[s][0] : offsets[e][1]]
        predictions[example.id] = best_text
    return predictions


def baseline_model(model_path: str, settings: BaselineSettings):
    """The pretrained model in fp32 with peft LoRA on query/value and a trained QA head."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(settings.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(model_path, dtype=torch.float32)
    lora = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=QV_TARGETS[model.config.model_type],
        modules_to_save=["qa_outputs"],
        bias="none",
    )
    return get_peft_model(model, lora)


def run_baseline(
    model_path: str, train_examples, dev_examples, settings: BaselineSettings, callbacks: Sequence[Any] = ()
) -> dict:
    """Train with the plain Trainer recipe, then predict and score the dev questions (`callbacks`: the
    Trainer's, for a caller that watches its training)."""
    from transformers import AutoTokenizer, Trainer, TrainingArguments, default_data_collator

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    began = time.perf_counter()
    train_features = prepare_train_features(train_examples, tokenizer, settings)
    tokenize_seconds = time.perf_counter() - began
    model = baseline_model(model_path, settings)
    steps = int(np.ceil(len(train_features) / settings.batch_size) * settings.epochs)
    with tempfile.TemporaryDirectory() as scratch:
        arguments = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=settings.eval_batch_size,
            learning_rate=settings.learning_rate,
            num_train_epochs=settings.epochs,
            warmup_steps=int(settings.warmup_fraction * steps),  # transformers 5 has no warmup_ratio
            weight_decay=settings.weight_decay,
            bf16=settings.bf16,
            use_cpu=settings.use_cpu,
            seed=settings.seed,
            save_strategy="no",
            report_to=[],
            logging_steps=max(1, steps // 10),
            disable_tqdm=True,
        )
        collator = default_data_collator
        trainer = Trainer(
            model=model, args=arguments, train_dataset=train_features, data_collator=collator, callbacks=list(callbacks)
        )
        cpu_began = time.process_time()
        train_output = trainer.train()
        train_cpu = time.process_time() - cpu_began
        began = time.perf_counter()
        inputs, example_ids, offset_mappings = prepare_validation_features(dev_examples, tokenizer, settings)
        output = trainer.predict(inputs)
        start_logits, end_logits = output.predictions
        predictions = postprocess_qa_predictions(
            dev_examples, example_ids, offset_mappings, start_logits, end_logits, settings
        )
        eval_seconds = time.perf_counter() - began
    metrics = compute_metrics(predictions, gold_answers(dev_examples))
    train_seconds = train_output.metrics["train_runtime"]
    real_tokens = sum(sum(f["attention_mask"]) for f in train_features)
    return {
        "train_features": len(train_features),
        "train_seconds": train_seconds,
        "train_features_per_second": len(train_features) * settings.epochs / train_seconds,
        "train_tokens_per_second": real_tokens * settings.epochs / train_seconds,
        "train_features_per_cpu_second": len(train_features) * settings.epochs / train_cpu,
        "eval_features_per_second": len(inputs) / eval_seconds,
        "tokenize_seconds": tokenize_seconds,
        "exact_match": metrics["exact_match"],
        "f1": metrics["f1"],
        "train_loss": train_output.training_loss,
    }
