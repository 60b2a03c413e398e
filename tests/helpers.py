"""Builders that several test modules share: plain functions, classes and constants (the pytest fixtures
are in conftest.py, the hand-made SQuAD data in squad_fixtures.py). No test module imports another."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import strategies as st

from peftqa import files
from peftqa.data import Example
from peftqa.features.windows import FeatureSet
from peftqa.methods import get_method, method_names
from peftqa.settings.groups import ScoringSettings
from peftqa.settings.run_config import RunConfig
from peftqa.study.pipeline import StudyPreset
from tests.squad_fixtures import write_v2

TOKENIZER_DIR = Path(__file__).parent / "fixtures" / "bert-uncased-tokenizer"


def tiny_run_config(model_dir, squad_dir, out, method="lora", **overrides):
    """Settings for a run that trains in seconds on the tiny models and the tiny SQuAD fixture."""
    values = dict(
        method=method,
        model=str(model_dir),
        data_dir=str(squad_dir) if squad_dir is not None else None,
        max_length=128,
        doc_stride=32,
        batch_size=2,
        eval_batch_size=4,
        epochs=2,
        lr=1e-2,
        checkpoint_every_steps=2,
        validation_questions=3,  # one of the fixture's two articles, when a run is scored on held-out train
        output_dir=str(out),
        precision="fp32",  # the same numbers on every CI machine, with or without bf16 units
    )
    values.update(overrides)
    return RunConfig.flat(**values)


class Killed(BaseException):
    """Stands for kill -9 in the middle of a step: nothing after it runs, nothing more is saved."""


# ---------------------------------------------------------------------------- features


def example_of(context: str, answer: str, occurrence: int = 0, question: str = "What is it?") -> Example:
    """A question on `context` whose answer is the `occurrence`-th appearance of `answer` in it."""
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(answer, start + 1)
    return Example("x", question, context, (answer,), (start,))


def window_examples() -> list[Example]:
    """Short and long contexts, shared contexts, a very long question, no answer, accents."""
    filler = " ".join(
        f"Sentence number {i} talks about the château of Émile, (built in {1700 + i})." for i in range(40)
    )
    long_context = f"{filler} The treasure lies under the old oak tree. {filler}"
    short_context = "Pride and Prejudice was written by Jane Austen and published in 1813."
    long_question = "Which " + " ".join(f"very{i}" for i in range(80)) + " tree?"

    def example(qid: str, question: str, context: str, answer: str | None) -> Example:
        if answer is None:
            return Example(qid, question, context, (), ())
        return Example(qid, question, context, (answer,), (context.index(answer),))

    return [
        example("a", "Where is the treasure?", long_context, "the old oak tree"),
        example("b", "   Who built the château?", long_context, "Émile"),
        example("c", long_question, long_context, "oak"),
        example("d", "Who wrote it?", short_context, "Jane Austen"),
        example("e", "When?", short_context, "1813"),
        example("f", "What is asked at prediction time?", long_context, None),
        example("g", "When was number 39 built?", long_context, "1739"),
    ]


def assert_same_features(left: FeatureSet, right: FeatureSet) -> None:
    for field in dataclasses.fields(FeatureSet):
        a, b = getattr(left, field.name), getattr(right, field.name)
        assert (a is None) == (b is None), field.name
        if a is not None:
            assert a.dtype == b.dtype and np.array_equal(a, b), field.name


# ---------------------------------------------------------------------------- methods


def method_options(spec):
    """The method's default options, or its example ones where it has no usable defaults (peft)."""
    return spec.make_options(dict(spec.example_options or {}))


def random_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Two rows of 24 random token ids with answer labels, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1000, 2000, (2, 24), generator=generator),
        "attention_mask": torch.ones(2, 24, dtype=torch.long),
        "start_positions": torch.tensor([3, 5]),
        "end_positions": torch.tensor([4, 9]),
    }


def trained_two_steps(spec, model_dir, options=None):
    """The method applied to the model in `model_dir` and trained two AdamW steps on random batches."""
    from peftqa.model.backbone import load_qa_model

    torch.manual_seed(0)
    model = spec.apply(load_qa_model(str(model_dir)), options or method_options(spec))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    for step in range(2):
        model(**random_batch(step)).loss.backward()
        optimizer.step()
        if spec.after_optimizer_step is not None:
            spec.after_optimizer_step(model, step, 2)
        optimizer.zero_grad()
    return model.eval()


# ---------------------------------------------------------------------------- report inputs, written by hand
# Every per-question score is chosen, so every verdict is known.

DEVICE = "cpu: x86_64, 2 threads"
# What sweep.json says about the questions its trials were scored on.
SWEEP_QUESTIONS = {
    "eval_split": "validation",
    "eval_limit": 200,
    "validation_questions": 300,
    "base_config": {"eval_sample": "random", "eval_seed": 0},
}


def fake_sweep(folder):
    """A finished three-point lr sweep of lora whose best trial is its middle one."""
    from peftqa.sweep import write_sweep

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


def fake_run(folder, data_dir, method, right, seed=42, lr=1e-3, scores_file=True, trainable=1000, size=4096):
    """A finished run whose answer to dev question k is right (the gold town) when right[k], else wrong."""
    from peftqa.data import QuestionChoice, load_squad
    from peftqa.inference import run_folder

    examples = load_squad(Path(data_dir) / "dev-v1.1.json")
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
    files.write_json_atomic(folder / run_folder.RUN_JSON, settings)
    files.write_json_atomic(folder / run_folder.PREDICTIONS_JSON, predictions)
    (folder / run_folder.SCORES_JSONL).unlink(missing_ok=True)
    if scores_file:
        (folder / run_folder.SCORES_JSONL).write_text("".join(json.dumps(row) + "\n" for row in rows))
    metrics = {"method": method, "model": "m", "exact_match": f1, "f1": f1, "trainable_params": trainable}
    metrics |= {"trainable_percent": 1.0, "artifact_bytes": size, "train_seconds": 1.0}
    files.write_json_atomic(
        folder / run_folder.METRICS_JSON, {**metrics, "train_features_per_second": 1.0, "history": []}
    )
    return folder


# ---------------------------------------------------------------------------- tiny trained runs for serving

WINDOWS = ScoringSettings(max_length=128, doc_stride=32)  # the windows tiny_run_config trains with
CONTEXT = "Pride and Prejudice was written by Jane Austen and published in 1813 by Thomas Egerton."
QUESTION = "Who wrote Pride and Prejudice?"
METHODS = tuple(method_names())  # every registered method, so a new one is checked for sharing too


def train_tiny_runs(methods, model_dir: Path, squad_dir: Path, root: Path) -> dict[str, Path]:
    """One finished tiny run (two optimiser steps) per method, in root/<method>."""
    from peftqa.training.loop import train

    with pytest.MonkeyPatch.context() as patch:
        # Module-scoped fixtures start before the autouse cache fixture: keep caches out of $HOME here too.
        patch.setenv("PEFTQA_CACHE_DIR", str(root / "cache"))
        for method in methods:
            # A method with no usable defaults (peft: its config file) runs with its example options.
            options = dict(get_method(method).example_options or {})
            config = tiny_run_config(model_dir, squad_dir, root / method, method, max_steps=2, method_options=options)
            train(config, log=lambda line: None)
    return {method: root / method for method in methods}


def train_abstaining_run(model_dir: Path, root: Path) -> Path:
    """A tiny run on SQuAD 2.0-format data whose null threshold makes it answer nothing, in root/abstains."""
    from peftqa.training.loop import train

    dev = write_v2(root / "dev-v2.json")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEFTQA_CACHE_DIR", str(root / "cache"))
        config = tiny_run_config(
            model_dir, None, root / "abstains", train_file=str(dev), dev_file=str(dev), null_threshold=-1e9,
            max_steps=1,
        )  # fmt: skip
        train(config, log=lambda line: None)
    return root / "abstains"


def runs_of_every_method(model_dir: Path, squad_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """A tiny run of every method, trained once per test session for all the serve test files (which
    only read them, or copy them first)."""
    root = tmp_path_factory.getbasetemp() / "serve-runs"
    trained = root / "trained"  # written last: a session that stopped halfway trains them again
    if not trained.exists():
        shutil.rmtree(root, ignore_errors=True)
        train_tiny_runs(METHODS, model_dir, squad_dir, root)
        trained.touch()
    return {method: root / method for method in METHODS}


class PointAtWord(torch.nn.Module):
    """A stand-in QA model whose start and end logits pick out one token id wherever it is."""

    def __init__(self, token_id: int) -> None:
        super().__init__()
        self.token_id = token_id
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, start_positions=None, end_positions=None, **_):
        logits = (input_ids == self.token_id).float() * 10.0
        return SimpleNamespace(start_logits=logits, end_logits=logits, loss=torch.zeros(()))


# ---------------------------------------------------------------------------- a tiny study

# A study that sweeps and trains lora for seconds on the tiny models and data (register it in STUDY_PRESETS).
TINY_STUDY = StudyPreset(
    description="tiny test study",
    methods=("lora",),
    run={"max_length": 128, "doc_stride": 32, "batch_size": 4, "eval_batch_size": 8, "validation_questions": 3},
    final_train_limit=None,
    final_epochs=1.0,
    final_eval_limit=None,
    held_out_limit=None,
    sweep_lrs={"lora": [1e-2]},
    compare_grids={"original": {"lora": [1e-5]}},
)


# ---------------------------------------------------------------------------- hostile JSON (fuzz tests)

# Raw JSON text that breaks some reader or other, put where a value was.
HOSTILE_JSON = [
    "[" * 5000 + "]" * 5000,
    '{"a":' * 3000 + "1" + "}" * 3000,
    "9" * 5000,
    "-" + "9" * 4400,
    "1e999",
    "-1e999",
    "NaN",
    "Infinity",
    '"\\ud800"',
    '"a\\udfffb"',
    '"\\udc00\\ud800"',
    '"\\u2028\\u0085\\r\\n"',
    "null",
    "true",
    "[]",
    "{}",
    '""',
    '"   "',
    "-1",
    "0",
    "3.5",
    "[1, 2]",
    '["x"]',
    '{"text": 1}',
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
# A hostile value as JSON text: one of HOSTILE_JSON, or any generated JSON value.
raw_json = st.sampled_from(HOSTILE_JSON) | json_values.map(json.dumps)


def json_paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every place in a JSON value (keys and indexes), the value itself first."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from json_paths(item, (*prefix, key))


_MARKER = "@@hostile@@"


def replaced_json(value: Any, path: tuple, raw: str) -> str:
    """`value` as JSON text with the value at `path` replaced by the JSON text `raw`."""
    if not path:
        return raw
    copy = json.loads(json.dumps(value))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = _MARKER
    return json.dumps(copy).replace(f'"{_MARKER}"', raw)
