"""torchvision Faster R-CNN state dicts -> tlx's FasterRCNN variables.

`backbone.body.*` is the backbone's own state dict (torchvision's IntermediateLayerGetter keeps
the classifier's names minus the classifier), converted by that backbone's rule table under
`backbone/`; the pyramid, the RPN and the RoI heads have one table here. fc6 reads pooled features
flattened (C, 7, 7) in torchvision and (7, 7, C) here, so its weight is permuted.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tlx.weights.rules import Rule, conv_kernel, convert_variables, expected_shapes, transpose
from tlx.weights.torchvision_mobilenet_v3 import MOBILENET_V3_RULES
from tlx.weights.torchvision_resnet import RESNET_RULES


def _under(prefix: str, rules: list[Rule], strip: str = "") -> list[Rule]:
    """A backbone's rules read from `backbone.body.` (their source prefix `strip` replaced, e.g.
    MobileNet's `features\\.`: the body is the features module itself) and written under
    `<collection>/backbone/`."""
    moved = []
    for rule in rules:
        target = rule.target
        if target is not None:
            collection, rest = target.split("/", 1)
            target = f"{collection}/backbone/{rest}"
        pattern = rule.pattern.removeprefix(strip) if strip else rule.pattern
        moved.append(Rule(prefix + pattern, target, rule.transform))
    return moved


def fc6_kernel(weight: np.ndarray, pooled: int = 7) -> np.ndarray:
    """[hidden, C * 7 * 7] read as (C, 7, 7) -> a flax kernel [7 * 7 * C, hidden] read (7, 7, C)."""
    hidden, inputs = weight.shape
    channels = inputs // (pooled * pooled)
    if channels * pooled * pooled != inputs:
        raise ValueError(f"fc6 takes {inputs} inputs, not channels x {pooled} x {pooled}")
    kernel = weight.reshape(hidden, channels, pooled, pooled).transpose(2, 3, 1, 0)
    return np.ascontiguousarray(kernel.reshape(-1, hidden))


def _conv(source: str, target: str) -> list[Rule]:
    return [
        Rule(source + r"\.weight", f"params/{target}/kernel", conv_kernel),
        Rule(source + r"\.bias", f"params/{target}/bias"),
    ]


def _dense(source: str, target: str, kernel=transpose) -> list[Rule]:
    return [
        Rule(source + r"\.weight", f"params/{target}/kernel", kernel),
        Rule(source + r"\.bias", f"params/{target}/bias"),
    ]


DETECTOR_RULES: list[Rule] = [
    *_conv(r"backbone\.fpn\.inner_blocks\.(\d+)\.0", r"fpn/inner_\1"),
    *_conv(r"backbone\.fpn\.layer_blocks\.(\d+)\.0", r"fpn/layer_\1"),
    *_conv(r"rpn\.head\.conv\.0\.0", "rpn/conv"),
    *_conv(r"rpn\.head\.cls_logits", "rpn/cls_logits"),
    *_conv(r"rpn\.head\.bbox_pred", "rpn/bbox_pred"),
    *_dense(r"roi_heads\.box_head\.fc6", "box_head/fc6", fc6_kernel),
    *_dense(r"roi_heads\.box_head\.fc7", "box_head/fc7"),
    *_dense(r"roi_heads\.box_predictor\.cls_score", "box_head/cls_score"),
    *_dense(r"roi_heads\.box_predictor\.bbox_pred", "box_head/bbox_pred"),
]

RESNET_FPN_RULES: list[Rule] = [*_under(r"backbone\.body\.", RESNET_RULES), *DETECTOR_RULES]
MOBILENET_V3_FPN_RULES: list[Rule] = [
    *_under(r"backbone\.body\.", MOBILENET_V3_RULES, strip=r"features\."),
    *DETECTOR_RULES,
]
RULES = {"resnet50": RESNET_FPN_RULES, "mobilenet_v3_large": MOBILENET_V3_FPN_RULES}


@functools.cache
def _shapes(backbone: str, num_classes: int) -> dict:
    from tlx.detection.faster_rcnn import init_faster_rcnn, torchvision_layout

    model = torchvision_layout(backbone, num_classes)
    canvas, sizes = jnp.zeros((1, 64, 64, 3)), jnp.full((1, 2), 64.0)
    shapes = jax.eval_shape(lambda: init_faster_rcnn(model, jax.random.key(0), canvas, sizes))
    return expected_shapes(shapes)


def convert_faster_rcnn(
    state_dict: dict, backbone: str = "resnet50", num_classes: int = 91
) -> dict:
    """A torchvision fasterrcnn_{resnet50,mobilenet_v3_large}_fpn state dict -> tlx's FasterRCNN
    variables (tlx.detection.faster_rcnn.torchvision_layout); every missing, unexpected or
    mis-shaped key in one ConversionError. BatchNorm's num_batches_tracked is dropped."""
    if backbone not in RULES:
        raise ValueError(f"backbone {backbone!r}: converters exist for {sorted(RULES)}")
    tensors = {k: np.asarray(v) for k, v in state_dict.items()}
    return convert_variables(tensors, RULES[backbone], dict(_shapes(backbone, num_classes)))
