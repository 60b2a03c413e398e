"""Prompt tuning and P-tuning (methods/_prompt.py): logits of the input's length, and a loss on them
that lets the method learn, where peft's own QA forward (labels unshifted) learns nothing usable."""

from __future__ import annotations

import json

import pytest
import torch

from peftqa.errors import PeftqaError
from peftqa.methods import get_method
from peftqa.model.backbone import load_qa_model

PROMPT_METHODS = ["prompt_tuning", "p_tuning"]
# Marker tokens: the answer of every row starts at START and ends at END, wherever they are.
START, END = 5000, 6000
WIDTH, VIRTUAL = 24, 20


def _marked_batch(generator: torch.Generator, rows: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Random filler with an answer span marked by its first and last token, at a random place per row.

    The answer is found by content, not by position: a span at fixed positions is learnt even with
    unshifted labels (the position embeddings mark it in either coordinates), so it proves nothing.
    """
    input_ids = torch.randint(1000, 1100, (rows, WIDTH), generator=generator)
    starts = torch.randint(1, WIDTH - 6, (rows,), generator=generator)
    ends = starts + torch.randint(1, 5, (rows,), generator=generator)  # two marks, never one token
    input_ids[torch.arange(rows), starts] = START
    input_ids[torch.arange(rows), ends] = END
    return {"input_ids": input_ids, "attention_mask": torch.ones(rows, WIDTH, dtype=torch.long)}, starts, ends


def _train_and_score(model, steps: int = 40) -> tuple[float, float]:
    """Train what the model trains on marked batches; the share of fresh rows whose argmax start and end
    are the marked ones."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        inputs, starts, ends = _marked_batch(generator, 16)
        model(**inputs, start_positions=starts, end_positions=ends).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    inputs, starts, ends = _marked_batch(torch.Generator().manual_seed(99), 64)
    with torch.no_grad():
        output = model(**inputs)
    start_hits = (output.start_logits.argmax(-1) == starts).float().mean().item()
    end_hits = (output.end_logits.argmax(-1) == ends).float().mean().item()
    return start_hits, end_hits


@pytest.mark.parametrize("method", PROMPT_METHODS)
def test_the_method_learns_a_marked_span_that_peft_unshifted_does_not(method, tiny_bert_without_dropout):
    spec = get_method(method)
    options = spec.make_options({})
    torch.manual_seed(0)
    model = spec.apply(load_qa_model(str(tiny_bert_without_dropout)), options)
    assert min(_train_and_score(model)) >= 0.9

    # The same training on peft's own QA model: logits VIRTUAL positions wider, labels where the tokenizer
    # put them, so the head is asked to find the answer in the state of a token VIRTUAL places earlier.
    from peft import get_peft_model

    module = __import__(f"peftqa.methods.{method}", fromlist=["peft_config"])
    torch.manual_seed(0)
    base = load_qa_model(str(tiny_bert_without_dropout))
    raw = get_peft_model(base, module.peft_config(base, options))
    with torch.no_grad():
        assert raw(**_marked_batch(torch.Generator().manual_seed(1), 2)[0]).start_logits.shape[1] == WIDTH + VIRTUAL
    assert max(_train_and_score(raw)) <= 0.3  # chance is 1/24 a row


@pytest.mark.parametrize("method", PROMPT_METHODS)
def test_logits_and_loss_cover_the_real_tokens(method, tiny_model_dir):
    from transformers.loss.loss_utils import ForQuestionAnsweringLoss

    spec = get_method(method)
    model = spec.apply(load_qa_model(str(tiny_model_dir)), spec.make_options({})).eval()
    inputs, starts, ends = _marked_batch(torch.Generator().manual_seed(2), 3)
    ends[2] = WIDTH + 7  # past the input: clamped and ignored, as transformers' QA heads do
    with torch.no_grad():
        output = model(**inputs, start_positions=starts, end_positions=ends)
    assert output.start_logits.shape == output.end_logits.shape == (3, WIDTH)
    expected = ForQuestionAnsweringLoss(output.start_logits, output.end_logits, starts, ends)
    torch.testing.assert_close(output.loss, expected)


def test_padding_and_the_training_loops_4d_mask_give_the_same_logits(tiny_bert_dir):
    from peftqa.features.batches import forward_inputs

    spec = get_method("prompt_tuning")
    model = spec.apply(load_qa_model(str(tiny_bert_dir)), spec.make_options({})).eval()
    inputs, _, _ = _marked_batch(torch.Generator().manual_seed(3), 2)
    with torch.no_grad():
        alone = model(input_ids=inputs["input_ids"][:1, :10]).start_logits
        padded = dict(inputs, attention_mask=inputs["attention_mask"].clone())
        padded["attention_mask"][0, 10:] = 0
        two_d = model(**padded).start_logits
        four_d = model(**forward_inputs(padded, padded=True, sdpa=True)).start_logits
    torch.testing.assert_close(two_d[:1, :10], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(four_d, two_d, atol=1e-5, rtol=1e-5)


def test_segments_reach_the_encoder(tiny_bert_dir):
    """peft's forward drops token_type_ids for prompt learning; BERT needs them to tell question from context."""
    spec = get_method("prompt_tuning")
    model = spec.apply(load_qa_model(str(tiny_bert_dir)), spec.make_options({})).eval()
    inputs, _, _ = _marked_batch(torch.Generator().manual_seed(4), 2)
    segments = torch.zeros_like(inputs["input_ids"])
    segments[:, WIDTH // 2 :] = 1
    with torch.no_grad():
        without = model(**inputs).start_logits
        with_segments = model(**inputs, token_type_ids=segments).start_logits
    assert not torch.allclose(without, with_segments)


def test_inputs_too_long_for_the_positions_are_refused(tiny_bert_dir):
    spec = get_method("prompt_tuning")
    model = spec.apply(load_qa_model(str(tiny_bert_dir)), spec.make_options({}))
    with pytest.raises(PeftqaError, match="lower --max-length or --num-virtual-tokens"):
        model(input_ids=torch.full((1, 500), 1000))


@pytest.mark.parametrize("init", ["vocab", "text", "random"])
def test_every_prompt_init_builds_and_bad_options_are_refused(init, tiny_bert_dir):
    spec = get_method("prompt_tuning")
    model = spec.apply(load_qa_model(str(tiny_bert_dir)), spec.make_options({"prompt_tuning_init": init}))
    prompt = model.peft_model.prompt_encoder["default"].embedding.weight
    words = model.peft_model.word_embeddings.weight
    # vocab and text start as rows of the word embeddings; random does not.
    is_word = [bool((words == row).all(-1).any()) for row in prompt]
    assert all(is_word) if init != "random" else not any(is_word)
    if init == "text":  # "[CLS] answer the question : [SEP]", repeated to fill the prompt
        torch.testing.assert_close(prompt[1], words[3437])
    with pytest.raises(PeftqaError, match="prompt_tuning_init must be one of"):
        spec.make_options({"prompt_tuning_init": "nope"})


@pytest.mark.parametrize("method", PROMPT_METHODS)
def test_cli_train_evaluate_and_onnx_export_give_the_runs_scores(method, capsys, tmp_path, squad_dir, tiny_bert_dir):
    """The run's scores again from `peftqa evaluate`, and from its ONNX export (the prompt traces as constants)."""
    from peftqa.cli.commands import main

    run_dir = tmp_path / "run"
    code = main(
        ["train", "--method", method, "--model", str(tiny_bert_dir), "--data-dir", str(squad_dir), "--max-steps", "4",
         "--max-length", "128", "--doc-stride", "32", "--batch-size", "4", "--num-virtual-tokens", "8",
         "--output-dir", str(run_dir)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0
    scores = json.loads(capsys.readouterr().out)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["trainable_params"] < 0.1 * metrics["total_params"]
    for name in ("exact_match", "f1"):
        assert scores[name] == pytest.approx(metrics[name])
    onnx_dir = tmp_path / "onnx"
    assert main(["export", str(run_dir), "--out", str(onnx_dir), "--format", "onnx"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(onnx_dir)]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    assert (from_onnx["exact_match"], from_onnx["f1"]) == (metrics["exact_match"], metrics["f1"])
