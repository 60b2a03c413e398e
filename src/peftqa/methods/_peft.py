"""The parts every peft-based method shares: apply a peft config, save and load the adapter.

The QA head (`qa_outputs`) is new for every run, so it is trained and saved with the adapter
(`modules_to_save`); without that a reloaded adapter would sit under a random head.
"""

from __future__ import annotations

from pathlib import Path

QA_HEAD = ["qa_outputs"]
ADAPTER_DIR = "adapter"


def split_modules(value: str | list[str] | None) -> list[str] | str | None:
    """`--target-modules q_lin,v_lin` -> list; a string with regex characters stays a regex."""
    if value is None or isinstance(value, list):
        return value
    if any(ch in value for ch in "*$^|()\\"):
        return value
    return [part.strip() for part in value.split(",") if part.strip()]


def apply_peft(model, peft_config):
    from peft import get_peft_model

    return get_peft_model(model, peft_config)


def save_adapter(model, run_dir: Path) -> None:
    model.save_pretrained(run_dir / ADAPTER_DIR)


def load_adapter(base_model, run_dir: Path):
    from peft import PeftModel

    model = PeftModel.from_pretrained(base_model, run_dir / ADAPTER_DIR)
    return model.eval()
