"""BatchNorm in the groups a stage freezes: ``config.model.frozen_batchnorm``.

    "frozen"  statistics and affine (scale, bias) fixed: the default, and what Keras recommends
              when fine-tuning on little data
    "affine"  scale and bias train, statistics fixed (the cheap adaptation of "Training BatchNorm
              and Only BatchNorm", Frankle et al. 2021, and of TinyTL-style bias tuning)
    "train"   statistics re-estimated on the new data (AdaBN, Li et al. 2016); weights fixed
    "tent"    both: scale and bias train and each batch's statistics normalise (the running ones
              follow them), as TENT adapts to a target (Wang et al. 2021; tlx.adaptation)

"frozen" and "affine" normalise with the running statistics (the forward of
:func:`tlx.zoo.vision.make_forward`); "train" and "tent" use batch statistics. For "affine" and
"tent" the optimizer
needs the BatchNorm parameters of a group apart from the rest of it, so :func:`with_affine_labels`
gives each group that holds BatchNorm layers a second label ``<group>/bn``: it trains with its
group when the group trains, and at ``model.frozen_batchnorm_lr_multiplier`` while the group is
frozen. The labels are the same in every stage, so optimizer state carries over across stage
boundaries exactly as for groups, and the freeze audit shows the ``/bn`` rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from tlx.spec import BATCHNORM_POLICIES as POLICIES
from tlx.transfer.plans import FROZEN, Plan, Stage
from tlx.tree import flatten


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"model.frozen_batchnorm must be one of {POLICIES}, got {policy!r}.")
    return policy


def batchnorm_param_paths(flat_params: Mapping, model_state: Mapping) -> set[str]:
    """Parameters of BatchNorm layers: those of the modules that keep running statistics."""
    modules = {path.rsplit("/", 1)[0] for path in flatten(model_state.get("batch_stats", {}))}
    return {p for p in flat_params if p.rsplit("/", 1)[0] in modules}


def _split_labels(group_of: Mapping[str, str], bn_paths: set[str]) -> tuple[dict, set]:
    """(path -> label with BatchNorm parameters under `<group>/bn`, the groups holding them)."""
    labels = {p: (f"{g}/bn" if p in bn_paths else g) for p, g in group_of.items()}
    return labels, {g for p, g in group_of.items() if p in bn_paths}


def with_affine_labels(
    plan: Plan, group_of: Mapping[str, str], bn_paths: set[str], multiplier: float = 1.0
) -> tuple[Plan, dict[str, str]]:
    """The plan and path -> label map of the "affine" policy (see the module docstring)."""
    if not multiplier > 0:
        raise ValueError(f"model.frozen_batchnorm_lr_multiplier={multiplier} must be > 0.")
    labels, with_bn = _split_labels(group_of, bn_paths)

    def expand(stage: Stage) -> Stage:
        multipliers = {}
        for group, m in stage.multipliers.items():
            multipliers[group] = m
            if group in with_bn:
                multipliers[f"{group}/bn"] = multiplier if m is FROZEN else m
        return Stage(stage.start_step, multipliers)

    return dataclasses.replace(plan, stages=tuple(expand(s) for s in plan.stages)), labels


def with_fixed_labels(
    plan: Plan, group_of: Mapping[str, str], bn_paths: set[str]
) -> tuple[Plan, dict[str, str]]:
    """The plan and path -> label map of ``model.batchnorm="fixed"``: every BatchNorm scale and
    bias under a ``<group>/bn`` label frozen in every stage, even where its group trains, as in
    torchvision's FrozenBatchNorm2d (weight and bias are buffers there, never trained)."""
    labels, with_bn = _split_labels(group_of, bn_paths)

    def expand(stage: Stage) -> Stage:
        multipliers = dict(stage.multipliers)
        multipliers.update({f"{g}/bn": FROZEN for g in stage.multipliers if g in with_bn})
        return Stage(stage.start_step, multipliers)

    return dataclasses.replace(plan, stages=tuple(expand(s) for s in plan.stages)), labels
