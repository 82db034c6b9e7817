"""torchvision MobileNetV3-Large state dicts -> tlx's MobileNetV3 `params` and `batch_stats`.

A block's torch layers are numbered in order (`block.0` the expansion when there is one, then the
depthwise conv, the squeeze-excitation when there is one, the projection), so the rule table is
built from the architecture's table rather than written by hand. What the model must contain
comes from its abstract init: every missing, unexpected or mis-shaped key in one error.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tlx.models.mobilenet_v3 import LARGE, LAST_CONV, MobileNetV3
from tlx.weights.rules import (
    Rule,
    conv_bn_rules,
    conv_kernel,
    convert_variables,
    expected_shapes,
    transpose,
)


def _conv_bias(source: str, target: str) -> list[Rule]:
    return [
        Rule(source + r"\.weight", f"params/{target}/kernel", conv_kernel),
        Rule(source + r"\.bias", f"params/{target}/bias"),
    ]


def _block_rules(index: int, expanded: bool, squeeze_excite: bool) -> list[Rule]:
    parts = (["expand"] if expanded else []) + ["depthwise"] + (["se"] if squeeze_excite else [])
    rules = []
    for j, part in enumerate([*parts, "project"]):
        source = rf"features\.{index}\.block\.{j}"
        if part == "se":
            rules += _conv_bias(source + r"\.fc1", f"features_{index}/se/fc1")
            rules += _conv_bias(source + r"\.fc2", f"features_{index}/se/fc2")
        else:
            rules += conv_bn_rules(source + r"\.0", source + r"\.1", f"features_{index}/{part}")
    return rules


def mobilenet_v3_rules() -> list[Rule]:
    rules = conv_bn_rules(r"features\.0\.0", r"features\.0\.1", "features_0")
    in_features = 16
    for index, (_, expanded, out, se, _, _) in enumerate(LARGE, start=1):
        rules += _block_rules(index, expanded != in_features, se)
        in_features = out
    rules += conv_bn_rules(
        rf"features\.{LAST_CONV}\.0", rf"features\.{LAST_CONV}\.1", f"features_{LAST_CONV}"
    )
    for i in (0, 3):
        rules += [
            Rule(rf"classifier\.{i}\.weight", f"params/classifier_{i}/kernel", transpose),
            Rule(rf"classifier\.{i}\.bias", f"params/classifier_{i}/bias"),
        ]
    rules.append(Rule(r"(?:.*\.)?num_batches_tracked", None))  # BatchNorm's step counter
    return rules


MOBILENET_V3_RULES = mobilenet_v3_rules()


@functools.cache
def _shapes(num_classes: int | None) -> dict:
    model = MobileNetV3(num_classes=num_classes)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32))
    )
    return expected_shapes(shapes)


def convert_mobilenet_v3(state_dict: dict, num_classes: int | None = 1000) -> dict:
    """A torchvision mobilenet_v3_large state dict -> {"params", "batch_stats"} (nested)."""
    tensors = {k: np.asarray(v) for k, v in state_dict.items()}
    return convert_variables(tensors, MOBILENET_V3_RULES, dict(_shapes(num_classes)))
