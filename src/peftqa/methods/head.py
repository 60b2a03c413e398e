"""The floor: only the QA head (`qa_outputs`) trains, on the frozen encoder: a linear probe.

Every other method trains this same fresh head besides its own tensors, so a method's F1 says its own
tensors learned something only where it is above this run's, on the same questions (the report says
which methods are). The method's learning rate is the head's.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftqa.methods._weights import base_subset_method
from peftqa.methods.registry import MethodSpec, is_qa_head, register

WEIGHTS_FILE = "head.safetensors"

# The QA head's rate in every method's run unless --head-lr says otherwise (full fine-tuning: its one
# rate), and this method's default. The head is new in every run, so it needs a rate that trains it
# within a short run whatever the method's own tensors need. Measured: the head alone memorising 64
# SQuAD training questions on MiniLM-L6 (80 steps of 16, peftqa's optimiser and schedule) brought its
# loss to 0.92x of the start at 1e-3, 0.81x at 3e-3, 0.63x at 1e-2, 0.49x at 3e-2: at 3e-3 the head is
# barely trained in a quick-study-length run. Not higher: how fast a head may run ahead of the method's
# own tensors was not measured, and a head that fits the frozen features alone leaves the method less
# to show; the head method's sweep tries the higher rates.
DEFAULT_HEAD_LR = 1e-2


@dataclass
class HeadOptions:
    """The head probe has no options of its own: the whole QA head trains, nothing else."""


register(
    MethodSpec(
        name="head",
        description="the floor: only the QA head trains, on the frozen encoder (a linear probe)",
        options_cls=HeadOptions,
        default_lr=DEFAULT_HEAD_LR,  # the rate the head has in every other method's run
        # Higher rates too: memorising 64 questions, 3e-2 and 1e-1 went further still (0.49x, 0.25x of the
        # starting loss after 80 and 240 steps), and the floor should be the best the head alone does.
        sweep_lrs={"default": (3e-3, 1e-2, 3e-2, 1e-1), "quick": (1e-2, 3e-2, 1e-1)},
        trained_names=r"(?!)",  # nothing besides the head
        trainable_params={"distilbert": 1_538, "minilm-l6": 770},
        starts_as_base=True,
        head_rate="only",
        # The saved head replaces the base model's random one in place.
        **base_subset_method(is_qa_head, WEIGHTS_FILE),
    )
)
