"""The examples shipped with peftqa: SQuAD dev questions (`squad_dev.json`: the page's examples, the
export's probe windows, the serving benchmark's question) and the report's hand-written questions
(`qualitative.json`)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any


@functools.cache
def load_examples() -> dict[str, Any]:
    """The shipped SQuAD dev examples with their licence attribution; read once."""
    text = resources.files(__name__).joinpath("squad_dev.json").read_text(encoding="utf-8")
    return json.loads(text)
