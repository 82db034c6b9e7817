"""torchvision ResNet state dicts -> tlx's ResNet `params` and `batch_stats`.

One rule table serves every depth: the block indices are regex groups. What a given depth must
contain comes from the model itself (`expected_shapes` of its abstract init), so a resnet50 state
dict converted as depth=101 fails with every missing key named, never silently half-loads.
Targets are prefixed with their flax collection ("params/..." or "batch_stats/...").
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np

from tlx.models.resnet import RESNET_CONFIGS, ResNet
from tlx.weights.rules import (
    ConversionError,
    Rule,
    conv_kernel,
    convert_variables,
    expected_shapes,
    transpose,
)

_STAGE_BLOCK = r"layer([1-4])\.(\d+)"  # torch `layer2.3` -> flax `layer2_3`
_BN_LEAVES = {"weight": "params/{}/scale", "bias": "params/{}/bias"}
_BN_STATS = {"running_mean": "batch_stats/{}/mean", "running_var": "batch_stats/{}/var"}


def _bn(source: str, target: str) -> list[Rule]:
    return [
        Rule(rf"{source}\.{leaf}", pattern.format(target))
        for leaf, pattern in {**_BN_LEAVES, **_BN_STATS}.items()
    ]


RESNET_RULES: list[Rule] = [
    Rule(r"conv1\.weight", "params/conv1/kernel", conv_kernel),
    *_bn(r"bn1", "bn1"),
    Rule(rf"{_STAGE_BLOCK}\.conv([1-3])\.weight", r"params/layer\1_\2/conv\3/kernel", conv_kernel),
    *_bn(rf"{_STAGE_BLOCK}\.bn([1-3])", r"layer\1_\2/bn\3"),
    # downsample = Sequential(conv1x1, BatchNorm2d) on the first block of a stage.
    Rule(
        rf"{_STAGE_BLOCK}\.downsample\.0\.weight",
        r"params/layer\1_\2/downsample_0/kernel",
        conv_kernel,
    ),
    *_bn(rf"{_STAGE_BLOCK}\.downsample\.1", r"layer\1_\2/downsample_1"),
    Rule(r"fc\.weight", "params/fc/kernel", transpose),
    Rule(r"fc\.bias", "params/fc/bias"),
    # Dropped on purpose: BatchNorm's step counter, unused in eval and by flax.
    Rule(r"(?:.*\.)?num_batches_tracked", None),
]

_LEAF_TO_TORCH = {
    "params": {"kernel": "weight", "scale": "weight", "bias": "bias"},
    "batch_stats": {"mean": "running_mean", "var": "running_var"},
}


def torch_key(target: str) -> str:
    """The inverse of RESNET_RULES: 'batch_stats/layer2_0/downsample_1/var' ->
    'layer2.0.downsample.1.running_var'. Lets a missing variable be reported by the key a torch
    user would look for."""
    collection, *modules, leaf = target.split("/")
    modules = [re.sub(r"_(\d+)$", r".\1", m) for m in modules]
    return ".".join([*modules, _LEAF_TO_TORCH[collection][leaf]])


def resnet_expected_shapes(depth: int = 50, num_classes: int | None = 1000) -> dict:
    """{"params/...": shape, "batch_stats/...": shape} of tlx's ResNet, from an abstract init
    (no arrays are allocated). `num_classes=None`: a checkpoint without `fc`."""
    return dict(_expected_shapes(depth, num_classes))  # a copy: the cached one stays intact


@functools.cache  # tracing ResNet-152 takes seconds; its shapes never change
def _expected_shapes(depth: int, num_classes: int | None) -> dict:
    if depth not in RESNET_CONFIGS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_CONFIGS)}: {depth}")
    model = ResNet(depth=depth, num_classes=num_classes)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.float32))
    )
    return expected_shapes(variables)


def convert_resnet(
    state_dict: dict[str, np.ndarray], depth: int = 50, *, num_classes: int | None = 1000
) -> dict[str, dict]:
    """A torchvision resnet{depth} state dict -> {"params": nested, "batch_stats": nested}.

    `num_classes` is the checkpoint's fc width (1000 for ImageNet; None when it has no fc).
    Raises one ConversionError naming every missing (by its torch key), unexpected or mis-shaped
    key.
    """
    expected = _expected_shapes(depth, num_classes)
    state_dict = {k: np.asarray(v) for k, v in state_dict.items()}
    missing = [
        f"missing source key {torch_key(t)!r} for {t!r} {shape}"
        for t, shape in expected.items()
        if torch_key(t) not in state_dict
    ]
    try:
        variables = convert_variables(state_dict, RESNET_RULES, expected)
    except ConversionError as e:
        # Missing keys are already named above, by their torch names.
        rest = [p for p in e.problems if not p.startswith("no source key gives")]
        raise ConversionError(missing + rest) from None
    return variables
