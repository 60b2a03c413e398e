"""AdaLoRA: LoRA as an SVD, P diag(E) Q, whose rank budget is reallocated while it trains: triplets
(a singular value with its two vectors) that matter least are pruned, from init_r per layer toward
an average of target_r (Zhang et al., 2023).

peft only reallocates when `update_and_allocate(step)` is called after every optimiser step, which the
Hugging Face Trainer never does, so an AdaLoRA run there is a fixed-rank LoRA. Here the training
loop's `after_optimizer_step` hook calls it. peft needs the run's length (`total_step`) when the
config is built, before peftqa knows it: `apply` builds it with a one-step placeholder and the hook
sets the real schedule (total_step, and tinit/tfinal as fractions of it) from the loop's total steps.

The run's final allocation is saved with the adapter (`rank_pattern` in adapter_config.json; the
saved tensors are cut to the kept ranks, and `PeftModel.from_pretrained` rebuilds the pruned layers).
The RankAllocator's importance scores live outside the model's parameters, so the checkpoint carries
them (`training_state`) and --resume continues the allocation where it stopped.

Training goes through a plain `PeftModel`, as every peftqa adapter does, whose forward skips
AdaLoraModel's (peft's question-answering model would add it, but drops `token_type_ids`): a hook
adds AdaLoRA's orthogonal regulariser of P and Q to the training loss instead.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from peftqa.methods._peft import QA_HEAD, load_adapter, modules_option, register_peft, targets
from peftqa.methods.targets import ALL_LINEAR

RANK_OPTION = "adalora_target_r"
# The RankAllocator's per-parameter scores: the instant sensitivity |w * grad| and its two moving averages.
_SCORES = ("ipt", "exp_avg_ipt", "exp_avg_unc")
# Where `apply` leaves the schedule's fractions for the step hook, which is given only the model, and
# where the hook keeps the final allocation's masks.
_SCHEDULE = "peftqa_adalora_schedule"
_MASKS = "peftqa_adalora_masks"


@dataclass
class AdaLoraOptions:
    adalora_target_r: int = field(default=8, metadata={"help": "average rank per layer once the budget is spent"})
    adalora_init_r: int | None = field(
        default=None,
        metadata={"help": "rank per layer at the start (default: 1.5 x the target rank, rounded up: 12 for 8)"},
    )
    adalora_alpha: int = field(default=32, metadata={"help": "scaling numerator: the update is scaled by alpha/init_r"})
    adalora_tinit_fraction: float = field(
        # Importance is measured on triplets that have started to learn before any is pruned.
        default=0.1,
        metadata={"help": "share of the steps trained at the initial rank before the budget shrinks"},
    )
    adalora_tfinal_fraction: float = field(
        # The last steps fine-tune the final allocation instead of pruning up to the end.
        default=0.2,
        metadata={"help": "share of the steps trained at the final allocation"},
    )
    adalora_delta_t: int = field(
        # Every allocation reads the scores' threshold and the kept ranks from the device (see
        # after_optimizer_step): every 10th step, not every step.
        default=10,
        metadata={"help": "steps between two reallocations while the budget shrinks"},
    )
    adalora_orth_reg_weight: float = field(
        default=0.5, metadata={"help": "weight of the regulariser that keeps P and Q orthogonal"}
    )
    target_modules: str | None = modules_option(
        "comma-separated layer names or a regex; default: every linear layer of the encoder"
    )

    def __post_init__(self) -> None:
        if self.initial_rank <= self.adalora_target_r:
            raise ValueError(
                f"adalora_init_r ({self.initial_rank}) must be above adalora_target_r ({self.adalora_target_r}): "
                "AdaLoRA prunes from the first to the second"
            )
        for name in ("adalora_tinit_fraction", "adalora_tfinal_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.adalora_tinit_fraction + self.adalora_tfinal_fraction >= 1.0:
            raise ValueError("adalora_tinit_fraction + adalora_tfinal_fraction must leave steps to reallocate in")
        if self.adalora_orth_reg_weight < 0:
            raise ValueError(f"adalora_orth_reg_weight must be at least 0, got {self.adalora_orth_reg_weight}")

    @property
    def initial_rank(self) -> int:
        # Derived from the target by default, so a sweep over target ranks (--ranks) stays valid.
        return self.adalora_init_r or math.ceil(1.5 * self.adalora_target_r)


def schedule(total_steps: int, tinit_fraction: float, tfinal_fraction: float) -> tuple[int, int]:
    """(tinit, tfinal) in steps for a run of `total_steps`: at least one final step, where the last
    allocation is forced to the target budget, and at least one step to reallocate in before it
    (a one-step run has neither and keeps its initial ranks)."""
    tfinal = min(max(1, int(tfinal_fraction * total_steps)), total_steps - 1)
    tinit = max(0, min(int(tinit_fraction * total_steps), total_steps - tfinal - 1))
    return tinit, tfinal


def peft_config(model: Any, options: AdaLoraOptions) -> Any:
    from peft import AdaLoraConfig

    layers = targets(model, options, ALL_LINEAR, "adalora")
    return AdaLoraConfig(
        init_r=options.initial_rank,
        target_r=options.adalora_target_r,
        lora_alpha=options.adalora_alpha,
        deltaT=options.adalora_delta_t,
        orth_reg_weight=options.adalora_orth_reg_weight,
        # A placeholder that passes peft's checks: after_optimizer_step sets the run's own schedule.
        total_step=1,
        tinit=0,
        tfinal=0,
        target_modules=layers,
        modules_to_save=list(QA_HEAD),
    )


def _adalora_model(model: Any) -> Any:
    """peft's AdaLoraModel inside the PeftModel (it holds the RankAllocator)."""
    return model.base_model


def _orthogonal_penalty(layers: list[Any], adapter: str) -> torch.Tensor:
    """AdaLoraModel.forward's regulariser: the mean of ||Q Q^T - I||_F and ||P^T P - I||_F over the
    layers, Q (lora_A) the right singular vectors and P (lora_B) the left ones."""
    terms = []
    for layer in layers:
        right, left = layer.lora_A[adapter], layer.lora_B[adapter]
        for gram in (right @ right.T, left.T @ left):
            identity = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
            terms.append(torch.linalg.matrix_norm(gram - identity))
    return torch.stack(terms).mean()


def _add_orthogonal_regulariser(peft_model: Any) -> None:
    """While training, the model's loss gets `orth_reg_weight` times the orthogonality penalty."""
    from peft.tuners.adalora import AdaLoraLayer

    adalora = _adalora_model(peft_model)
    adapter = adalora.trainable_adapter_name
    weight = adalora.peft_config[adapter].orth_reg_weight
    layers = [m for m in adalora.model.modules() if isinstance(m, AdaLoraLayer) and adapter in m.lora_A]
    if weight == 0 or not layers:
        return

    def add_penalty(module: torch.nn.Module, inputs: Any, output: Any) -> Any:
        if module.training and getattr(output, "loss", None) is not None:
            output.loss = output.loss + weight * _orthogonal_penalty(layers, adapter)
        return output

    adalora.model.register_forward_hook(add_penalty)


def apply(model: Any, options: AdaLoraOptions) -> Any:
    from peft import get_peft_model

    peft_model = get_peft_model(model, peft_config(model, options))
    setattr(peft_model, _SCHEDULE, (options.adalora_tinit_fraction, options.adalora_tfinal_fraction))
    _add_orthogonal_regulariser(peft_model)
    return peft_model


def load(base_model: Any, run_dir: Path) -> Any:
    """The saved adapter, its layers cut to the saved ranks (peft's own loading)."""
    with warnings.catch_warnings():
        # peft checks `rank_pattern` as LoRA's per-layer rank overrides and warns that AdaLoRA's (the
        # kept triplets, keyed by parameter) match no module and are ignored; AdaLoRA then applies it.
        warnings.filterwarnings("ignore", message="The following rank_pattern keys did not match")
        return load_adapter(base_model, run_dir)


def _rank_pattern(adalora: Any) -> dict[str, list[bool]]:
    """The latest allocation, keyed '<layer>.lora_E' (peft keys it by the E parameter's name, which
    loses the adapter's name once saved)."""
    adapter = next(iter(adalora.peft_config))
    pattern = adalora.peft_config[adapter].rank_pattern or {}
    return {key.removesuffix(f".{adapter}"): kept for key, kept in pattern.items()}


def _keep_final_allocation(model: Any, adalora: Any) -> None:
    """peft's `mask_using_rank_pattern`: zero the pruned singular values again after each step of the
    final phase (the optimiser moves them). peft builds the masks from host lists at every step, one
    host-to-device copy per layer, each of which makes the host wait for the device; here they are
    built once, on the device, and kept on the model."""
    masks = getattr(model, _MASKS, None)
    if masks is None:
        pattern, adapter = _rank_pattern(adalora), adalora.trainable_adapter_name
        masks = [
            (weight, torch.tensor(pattern[name.removesuffix(f".{adapter}")], device=weight.device).unsqueeze(-1))
            for name, weight in adalora.model.named_parameters()
            if f"lora_E.{adapter}" in name
        ]
        setattr(model, _MASKS, masks)
    with torch.no_grad():
        for weight, kept in masks:
            weight.masked_fill_(~kept, 0.0)


def after_optimizer_step(model: Any, step: int, total_steps: int) -> None:
    """Set the schedule from the run's length (first call; again after a resume), then let peft update
    the importance scores and, on allocation steps, prune to the step's budget; in the final phase,
    keep the pruned singular values at zero.

    What this reads from the device is AdaLoRA's own: nothing on most steps (the scores are updated
    on the device); on an allocation step (every deltaT steps while the budget shrinks, and once at the
    final allocation) the score threshold (`kthvalue(...).item()`) and each layer's kept ranks
    (`.tolist()`). The final phase reads nothing (see _keep_final_allocation).
    """
    adalora = _adalora_model(model)
    config = adalora.peft_config[adalora.trainable_adapter_name]
    if config.total_step != total_steps:
        tinit_fraction, tfinal_fraction = getattr(model, _SCHEDULE)
        config.tinit, config.tfinal = schedule(total_steps, tinit_fraction, tfinal_fraction)
        config.total_step = total_steps
    if step > config.total_step - config.tfinal:
        _keep_final_allocation(model, adalora)
    else:
        adalora.update_and_allocate(step)


def training_state(model: Any) -> dict[str, Any]:
    """The RankAllocator's scores (on the CPU) and the latest allocation, for the checkpoint."""
    adalora = _adalora_model(model)
    allocator = adalora.rankallocator
    scores = {name: {k: v.detach().cpu().clone() for k, v in getattr(allocator, name).items()} for name in _SCORES}
    return {**scores, "rank_pattern": adalora.peft_config[adalora.trainable_adapter_name].rank_pattern}


def restore_training_state(model: Any, state: dict[str, Any]) -> None:
    """Put the checkpoint's scores and allocation back, each score beside its parameter's device."""
    adalora = _adalora_model(model)
    devices = {name: p.device for name, p in adalora.model.named_parameters()}
    for name in _SCORES:
        setattr(adalora.rankallocator, name, {k: v.to(devices[k]) for k, v in state[name].items()})
    adalora.peft_config[adalora.trainable_adapter_name].rank_pattern = state["rank_pattern"]


def ranks(model: Any) -> dict[str, int]:
    """Each adapted layer's rank as allocated so far: the triplets the latest rank pattern keeps (the
    pruned ones are zeroed while training, cut away once saved), or all it holds before the first."""
    from peft.tuners.adalora import AdaLoraLayer

    adalora = _adalora_model(model)
    adapter, pattern = next(iter(adalora.peft_config)), _rank_pattern(adalora)
    found = {}
    for name, module in adalora.model.named_modules():
        if isinstance(module, AdaLoraLayer) and adapter in module.lora_E:
            kept = pattern.get(f"{name}.lora_E")
            found[name] = int(sum(kept)) if kept is not None else module.r[adapter]
    return found


register_peft(
    "adalora",
    "AdaLoRA (LoRA whose ranks are reallocated by importance while it trains) on every linear layer, QA head trained",
    AdaLoraOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=1e-2,
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)},
    trained_names=r"lora_[ABE]\.",
    rank_option=RANK_OPTION,
    apply=apply,
    load=load,
    after_optimizer_step=after_optimizer_step,
    training_state=training_state,
    restore_training_state=restore_training_state,
    trainable_params={"distilbert": 997_298, "minilm-l6": 498_866},
    starts_as_base=True,  # E (the singular values) starts at zero
)
