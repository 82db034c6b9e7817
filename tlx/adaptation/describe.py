"""What an adaptation run trains on and how, in words (for tlx.inspect and the run's log)."""

from __future__ import annotations

from tlx.data.sources import TEXT_DATASETS
from tlx.spec import RunSpec

LOSSES = {
    "none": "none (nothing trains)",
    "adabn": "none (nothing trains)",
    "tent": "{weight} x mean prediction entropy of the target batches",
    "pseudo_label": "source cross-entropy + {weight} x FixMatch (strong view against the weak "
    "view's argmax where its confidence >= {threshold})",
    "coral": "source cross-entropy + {weight} x Deep CORAL on {endpoint!r} features",
    "dann": "source cross-entropy + {weight} x domain classifier cross-entropy on {endpoint!r} "
    "features, reversed into them (Ganin's schedule)",
}


def describe_adaptation(spec: RunSpec) -> list[str]:
    """Lines naming the method, its streams, its loss, its statistics and what is evaluated."""
    adapt = spec.adapt
    if not adapt.enabled:
        return []
    trains = spec.total_steps > 0
    target_batch = adapt.target_batch_size or spec.batch_size
    lines = [f"Adaptation: {adapt.method} to {adapt.target} (target labels never trained on)"]
    if adapt.mixed:
        lines.append(
            f"  source stream   {spec.data.name} train, labelled, {spec.batch_size} a step"
        )
    is_text = spec.data.name in TEXT_DATASETS
    if trains:
        view = "tokens" if is_text else f"augment={spec.data.augment!r}"
        strong = ""
        if adapt.method == "pseudo_label":
            strong = f" + a strong view ({adapt.strong_augment!r})"
            if is_text:  # no text augmentation: the views differ by their dropout masks
                strong = " + the same tokens again (another dropout mask)"
        lines.append(
            f"  target stream   {adapt.target} {adapt.target_split}, unlabelled, "
            f"{target_batch} a step, {view}{strong}"
        )
    if adapt.label_map:
        lines.append(f"  labels          target:source {adapt.label_map}")
    if adapt.reestimates_statistics:
        lines.append(
            f"  statistics      BatchNorm re-estimated on {adapt.target} {adapt.target_split} "
            f"before training (batches of {adapt.statistics_batch_size})"
        )
    loss = LOSSES[adapt.method].format(
        weight=adapt.weight, threshold=adapt.threshold, endpoint=adapt.endpoint
    )
    ramp = f", its weight ramped over {adapt.ramp_steps} steps" if adapt.ramp_steps else ""
    lines.append(f"  loss            {loss}{ramp}")
    if trains and not is_text:
        lines.append(f"  BatchNorm       frozen groups: {spec.model.frozen_batchnorm!r}")
    selection = spec.selection.metric
    lines.append(
        f"  selection       {f'{spec.data.eval_split} {selection} (source)' if selection else 'none: the last step'}"
    )
    evaluated = ", ".join(f"target_{s}" for s in adapt.eval_splits)
    lines.append(f"  reported        {evaluated} (target labels read for the report only)")
    return lines
