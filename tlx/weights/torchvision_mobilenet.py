"""torchvision MobileNetV2 state dicts -> tlx's MobileNetV2 `params` and `batch_stats`.

Targets are prefixed with their flax collection ("params/..." or "batch_stats/..."), so one rule
table covers both; `convert_mobilenet_v2` splits them and nests each.
"""

from __future__ import annotations

import numpy as np

from tlx.tree import unflatten
from tlx.weights.rules import (  # noqa: F401  (conv_kernel: re-exported)
    ConversionError,
    Rule,
    conv_bn_rules,
    conv_kernel,
    convert,
    transpose,
)

_COLLECTIONS = ("params", "batch_stats")
_EXPANDED = r"([2-9]|1[0-7])"  # blocks with an expansion conv (t=6): features.2 .. features.17
_STEM_OR_LAST = r"(0|18)"


MOBILENET_V2_RULES: list[Rule] = [
    # Stem (features.0) and last conv (features.18): Conv2dNormActivation = [conv, bn, relu6].
    *conv_bn_rules(
        rf"features\.{_STEM_OR_LAST}\.0", rf"features\.{_STEM_OR_LAST}\.1", r"features_\1"
    ),
    # features.1 (t=1): conv = [dw ConvBNReLU, project conv, project bn].
    *conv_bn_rules(r"features\.1\.conv\.0\.0", r"features\.1\.conv\.0\.1", "features_1/depthwise"),
    *conv_bn_rules(r"features\.1\.conv\.1", r"features\.1\.conv\.2", "features_1/project"),
    # features.2-17 (t=6): conv = [expand ConvBNReLU, dw ConvBNReLU, project conv, project bn].
    *conv_bn_rules(
        rf"features\.{_EXPANDED}\.conv\.0\.0",
        rf"features\.{_EXPANDED}\.conv\.0\.1",
        r"features_\1/expand",
    ),
    *conv_bn_rules(
        rf"features\.{_EXPANDED}\.conv\.1\.0",
        rf"features\.{_EXPANDED}\.conv\.1\.1",
        r"features_\1/depthwise",
    ),
    *conv_bn_rules(
        rf"features\.{_EXPANDED}\.conv\.2",
        rf"features\.{_EXPANDED}\.conv\.3",
        r"features_\1/project",
    ),
    # classifier = [Dropout, Linear].
    Rule(r"classifier\.1\.weight", "params/classifier/kernel", transpose),
    Rule(r"classifier\.1\.bias", "params/classifier/bias"),
    # Dropped on purpose: BatchNorm's step counter, unused in eval and by flax.
    Rule(r"features\..*\.num_batches_tracked", None),
]


def _bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]


def expected_keys() -> list[str]:
    """Every key (less num_batches_tracked) of torchvision's mobilenet_v2 state dict; the names do
    not depend on width_mult or num_classes."""
    keys = []
    for i in (0, 18):
        keys += [f"features.{i}.0.weight", *_bn_keys(f"features.{i}.1")]
    keys += ["features.1.conv.0.0.weight", *_bn_keys("features.1.conv.0.1")]
    keys += ["features.1.conv.1.weight", *_bn_keys("features.1.conv.2")]
    for i in range(2, 18):
        p = f"features.{i}.conv"
        keys += [f"{p}.0.0.weight", *_bn_keys(f"{p}.0.1")]
        keys += [f"{p}.1.0.weight", *_bn_keys(f"{p}.1.1")]
        keys += [f"{p}.2.weight", *_bn_keys(f"{p}.3")]
    keys += ["classifier.1.weight", "classifier.1.bias"]
    return keys


def convert_mobilenet_v2(state_dict: dict[str, np.ndarray]) -> dict:
    """A torchvision mobilenet_v2 state dict -> {"params": nested, "batch_stats": nested}.

    Raises one ConversionError naming every missing, unexpected or malformed key.
    """
    state_dict = {k: np.asarray(v) for k, v in state_dict.items()}
    missing = [f"missing source key {k!r}" for k in expected_keys() if k not in state_dict]
    try:
        flat = convert(state_dict, MOBILENET_V2_RULES)
    except ConversionError as e:
        raise ConversionError(missing + e.problems) from None
    if missing:
        raise ConversionError(missing)
    out: dict[str, dict] = {c: {} for c in _COLLECTIONS}
    for path, value in flat.items():
        collection, rest = path.split("/", 1)
        out[collection][rest] = value
    return {c: unflatten(out[c]) for c in _COLLECTIONS}
