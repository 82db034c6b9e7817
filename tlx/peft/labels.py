"""What a parameter-efficient method trains inside the plan's trainable groups.

A plan says which groups train; `config.peft` says which of their parameters do: LoRA's factors
(`.../lora_a`, `.../lora_b`), BitFit's biases (every `.../bias`, LayerNorm's too, as Ben Zaken et
al. train them), the adapters and every LayerNorm (Houlsby et al.), the prompt (Lester et al.). The rest of a group is labelled `<group>/base`, frozen in every stage, and the
head (the last group) trains whole. The freeze audit and `tlx.inspect` then show `layer_3`
(what trains) beside `layer_3/base` (what does not), with their counts and optimizer bytes. The
same labelling as the affine-BatchNorm policy's `<group>/bn` (tlx.transfer.batchnorm), applied
after it: BatchNorm parameters keep that policy's label.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from tlx.peft.adapters import ADDED_PATTERN
from tlx.peft.lora import FACTOR_PATTERN
from tlx.peft.prompt import ADDED_PATTERN as PROMPT_PATTERN
from tlx.transfer.plans import FROZEN, Plan, Stage

BASE = "/base"
BN = "/bn"


def peft_trains(path: str, method: str) -> bool:
    """Whether `method` trains parameter `path` when its group trains."""
    if method == "lora":
        return re.search(FACTOR_PATTERN, path) is not None
    if method == "bitfit":
        return path.endswith("/bias")
    if method == "prompt":
        return re.search(PROMPT_PATTERN, path) is not None
    if method == "adapters":  # Houlsby et al. train the adapters and every LayerNorm
        return re.search(ADDED_PATTERN, path) is not None or "/LayerNorm/" in path
    raise ValueError(f"peft.method={method!r} has no trainable-parameter rule")


def with_peft_labels(
    plan: Plan, labels: Mapping[str, str], method: str, head: str
) -> tuple[Plan, dict[str, str]]:
    """The plan and path -> label map with `<group>/base` labels, frozen in every stage, for
    the parameters `method` does not train outside the `head` group."""

    def kept_frozen(path: str, label: str) -> bool:
        return (
            label not in (head, head + BN)
            and not label.endswith(BN)
            and not peft_trains(path, method)
        )

    new_labels = {
        p: (label + BASE if kept_frozen(p, label) else label) for p, label in labels.items()
    }
    based = {label for p, label in labels.items() if kept_frozen(p, label)}

    def expand(stage: Stage) -> Stage:
        multipliers = {}
        for label, m in stage.multipliers.items():
            multipliers[label] = m
            if label in based:
                multipliers[label + BASE] = FROZEN
        return Stage(stage.start_step, multipliers)

    return dataclasses.replace(plan, stages=tuple(expand(s) for s in plan.stages)), new_labels
