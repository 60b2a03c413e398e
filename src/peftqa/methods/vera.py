"""VeRA: one pair of frozen random matrices shared by every targeted layer, and per layer only two
trained scaling vectors, d (size r) and b (size out_features) (Kopiczko et al., 2024).

Defaults follow the paper: query and value projections (same shape, so one shared pair of
projections fits all), r=256, and a learning rate far above LoRA's (the vectors start near 0).
The projections are saved with the adapter, so loading never depends on a random generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peftqa.methods import MethodSpec, register
from peftqa.methods._peft import ADAPTER_DIR, QA_HEAD, apply_peft, load_adapter, save_adapter, split_modules
from peftqa.methods.targets import lookup

# Query and value projections: the paper's choice, and same-shaped so one pair of projections fits.
VERA_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "mpnet": ["q", "v"],
}


@dataclass
class VeraOptions:
    vera_r: int = field(default=256, metadata={"help": "rank of the shared frozen random projections"})
    vera_d_initial: float = field(default=0.1, metadata={"help": "initial value of the trained d vectors"})
    target_modules: str | None = field(
        default=None,
        metadata={"help": "comma-separated layer names or a regex; default: query and value projections"},
    )

    def __post_init__(self) -> None:
        if self.vera_r <= 0:
            raise ValueError(f"vera_r must be positive, got {self.vera_r}")


def peft_config(model, options: VeraOptions):
    from peft import VeraConfig

    targets = split_modules(options.target_modules) or lookup(VERA_TARGETS, model.config.model_type, "vera")
    return VeraConfig(
        r=options.vera_r,
        d_initial=options.vera_d_initial,
        target_modules=targets,
        save_projection=True,
        modules_to_save=QA_HEAD,
    )


def apply(model, options: VeraOptions):
    return apply_peft(model, peft_config(model, options))


register(
    MethodSpec(
        name="vera",
        description="VeRA (shared random projections, trained scaling vectors) on query and value, QA head trained",
        options_cls=VeraOptions,
        default_lr=1e-2,
        apply=apply,
        save=save_adapter,
        load=load_adapter,
        artifact=ADAPTER_DIR,
    )
)
