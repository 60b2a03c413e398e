"""`--method peft --peft-config CONFIG.json`: any peft adapter peftqa has no module of its own for,
from its config as `PeftConfig.save_pretrained` writes it (adapter_config.json, with its `peft_type`).

peftqa sets what makes it a QA run: the QA head (`qa_outputs`) is trained and saved with the adapter
(`modules_to_save`), the adapter trains (`inference_mode` off), and the task type is cleared, so the
model is a plain `PeftModel` as every peftqa adapter is. peft's question-answering model
(task_type QUESTION_ANS) does not pass `token_type_ids` on to the encoder, so a BERT would lose its
segment embeddings. Everything else is the file's.

The file is read and checked by peft's config class when the options are made, before any model
loads; what peft can only check against the model (target modules that match nothing) fails at
`apply`, before the run writes anything. Prompt-learning configs are refused: their virtual tokens
sit in front of the window whose token positions peftqa scores.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa.errors import PeftqaError
from peftqa.methods._peft import QA_HEAD, register_peft

CONFIG_FILE = "adapter_config.json"
# A LoHa config (two Hadamard-multiplied low-rank pairs per layer) on the query and value projections,
# named for DistilBERT and for BERT-family encoders: what the registry's tests and counts run.
EXAMPLE_CONFIG = Path(__file__).with_name("peft_example_loha.json")
# Methods peftqa runs itself, better than through a config: AdaLoRA needs the training loop's hook.
_OWN_METHOD = {"ADALORA": "adalora"}


@dataclass
class PeftConfigOptions:
    peft_config: str | None = field(
        default=None,
        metadata={
            "help": "a peft config as JSON (adapter_config.json, as PeftConfig.save_pretrained writes it, or its "
            "folder): trains that adapter (required, no default)"
        },
    )

    def __post_init__(self) -> None:
        if self.peft_config is None:
            raise ValueError("needs --peft-config CONFIG.json (a peft config, as PeftConfig.save_pretrained writes it)")
        read_config(self.peft_config)  # every problem with the file, now rather than once a model is loaded


def _config_file(path: str) -> Path:
    file = Path(path)
    file = file / CONFIG_FILE if file.is_dir() else file
    if not file.is_file():
        raise PeftqaError(f"--peft-config {path}: no such file")
    return file


def read_values(path: str) -> dict[str, Any]:
    """The config file's JSON object, as written (what run.json records)."""
    file = _config_file(path)
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PeftqaError(f"--peft-config {path} is not JSON ({error})") from None
    if not isinstance(values, dict) or not isinstance(values.get("peft_type"), str):
        raise PeftqaError(f'--peft-config {path}: a peft config is a JSON object with a peft_type (e.g. "LORA")')
    return values


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def read_config(path: str) -> Any:
    """The file as a peft config of its type, with what a peftqa QA run needs set (module docstring)."""
    from peft.config import PromptLearningConfig
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    from peftqa.methods.registry import method_names

    values = read_values(path)
    peft_type = values["peft_type"]
    known = {str(getattr(kind, "value", kind)): config_cls for kind, config_cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    if peft_type not in known:
        raise PeftqaError(
            f"--peft-config {path}: unknown peft_type {peft_type!r}; peft knows {', '.join(sorted(known))}"
        )
    config_cls = known[peft_type]
    ours = [name for name in method_names() if name != "peft"]
    if issubclass(config_cls, PromptLearningConfig):
        raise PeftqaError(
            f"--peft-config {path}: {peft_type} is prompt learning, which --method peft does not support (its virtual "
            f"tokens shift the positions peftqa scores); peftqa's methods: {', '.join(ours)}"
        )
    if peft_type in _OWN_METHOD:
        raise PeftqaError(f"--peft-config {path}: use --method {_OWN_METHOD[peft_type]} for {peft_type}")
    if "modules_to_save" not in {f.name for f in dataclasses.fields(config_cls)}:
        raise PeftqaError(f"--peft-config {path}: {peft_type} cannot train and save the QA head (no modules_to_save)")
    modules = values.get("modules_to_save") or []
    if not isinstance(modules, list):
        raise PeftqaError(f"--peft-config {path}: modules_to_save must be a list, got {modules!r}")
    values.update(
        task_type=None, inference_mode=False, modules_to_save=[*modules, *(m for m in QA_HEAD if m not in modules)]
    )
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as error:
        raise PeftqaError(f"--peft-config {path}: peft refuses it: {_one_line(error)}") from None
    except ImportError as error:  # a type whose package is not installed (AdaMSS needs scikit-learn)
        raise PeftqaError(f"--peft-config {path}: {peft_type} needs a package: {_one_line(error)}") from None


def apply(model: Any, options: PeftConfigOptions) -> Any:
    from peft import get_peft_model

    assert options.peft_config is not None  # the options refuse None
    try:
        adapted = get_peft_model(model, read_config(options.peft_config))
    except (TypeError, ValueError) as error:
        raise PeftqaError(f"--peft-config {options.peft_config}: peft cannot apply it: {_one_line(error)}") from None
    _check_a_step(adapted, options.peft_config)
    return adapted


def _check_a_step(model: Any, path: str) -> None:
    """One forward and backward pass of a QA batch through the adapted model, so that a config peft
    applies but cannot train with (one whose forward needs task ids, or breaks the encoder's shapes) is
    refused now, in one line, before any run folder is made. In eval mode, so no random number is drawn
    and the run trains as it would have; the gradients are dropped."""
    import torch

    training = model.training
    model.eval()
    ids = torch.ones((1, 8), dtype=torch.long, device=next(model.parameters()).device)
    try:
        output = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        (output.start_logits.sum() + output.end_logits.sum()).backward()
    except Exception as error:  # whatever the adapter type raises, the config is the cause
        raise PeftqaError(
            f"--peft-config {path}: peft applies it, but a training step fails: {type(error).__name__}: "
            f"{_one_line(error)}"
        ) from None
    finally:
        model.zero_grad(set_to_none=True)
        model.train(training)


def type_name(peft_type: str) -> str:
    """'LOHA' -> 'LoHa': the config class's name, as peft spells the method."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    config_cls = next(c for k, c in PEFT_TYPE_TO_CONFIG_MAPPING.items() if str(getattr(k, "value", k)) == peft_type)
    return config_cls.__name__.removesuffix("Config")


def run_details(options: PeftConfigOptions) -> dict[str, Any]:
    """What run.json records besides the path: the config's type and its content, as the file held it."""
    assert options.peft_config is not None
    values = read_values(options.peft_config)
    return {
        "label": f"peft ({type_name(values['peft_type'])} config)",
        "peft_type": values["peft_type"],
        "peft_config": values,
    }


register_peft(
    "peft",
    "any peft adapter from its config file (--peft-config CONFIG.json), QA head trained",
    PeftConfigOptions,
    lambda model, options: read_config(options.peft_config),
    # LoRA's rate and grids: a starting point for a config of any type.
    default_lr=1e-3,
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)},
    # Whatever the type, peft names every adapter parameter after the adapter, "default" (the QA head's
    # copy too: qa_outputs.modules_to_save.default).
    trained_names=r"\.default(\.|$)",
    apply=apply,
    example_options={"peft_config": str(EXAMPLE_CONFIG)},
    in_all=False,  # it needs the user's config file
    run_details=run_details,
    # The example config's counts (EXAMPLE_CONFIG): a config of the user's trains what it says.
    trainable_params={"distilbert": 296_450, "minilm-l6": 148_226},
    # Both depend on the config's type: not promised (starts_as_base), and true of most adapter types,
    # the example's LoHa among them; `peftqa export --format hf` refuses one that does not merge in one line.
    starts_as_base=False,
    merges=True,
)
