"""torchvision VGG16 / VGG19 (plain or `_bn`) state dicts -> tlx's VGG `params` / `batch_stats`.

torchvision numbers `features.N` over every layer, ReLUs and pools included (conv, [bn,] relu ...
pool), so the table is generated from the block layout instead of written as regexes. fc6 is the
one weight that needs more than a transpose: see :func:`fc6_kernel`.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np

from tlx.models.vgg import CONVS_PER_BLOCK, VGG
from tlx.weights.rules import (
    ConversionError,
    Rule,
    conv_kernel,
    convert_variables,
    expected_shapes,
    transpose,
)


def fc6_kernel(weight: np.ndarray, size: int = 7) -> np.ndarray:
    """torchvision's classifier.0 weight [4096, C*7*7] -> tlx's fc6 kernel [4096, 7*7*C].

    Both are [out, in] (tlx.models.vgg.OutInDense), but torchvision flattens its NCHW feature map
    in (C, H, W) order and tlx flattens NHWC in (H, W, C) order (as Keras does). Reordering the
    input axis to (H, W, C) makes both dot products sum the same products, so the logits agree;
    the weight as it is would silently scramble them.
    """
    if weight.ndim != 2 or weight.shape[1] % (size * size):
        raise ValueError(f"expected a [out, C*{size}*{size}] Linear weight, got {weight.shape}")
    out, flat = weight.shape
    source = weight.reshape(out, flat // (size * size), size * size).transpose(0, 2, 1)
    return np.ascontiguousarray(source).reshape(out, flat)  # [out, H*W, C] -> [out, H*W*C]


def _table(depth: int, batch_norm: bool) -> list[tuple[str, str, object]]:
    """(torchvision key, target, transform) for every tensor a checkpoint must hold."""
    if depth not in CONVS_PER_BLOCK:
        raise ValueError(f"VGG depth must be one of {sorted(CONVS_PER_BLOCK)}, got {depth}")
    rows: list[tuple[str, str, object]] = []
    index = 0
    for b, convs in enumerate(CONVS_PER_BLOCK[depth], 1):
        for i in range(1, convs + 1):
            name = f"block{b}_conv{i}"
            rows += [
                (f"features.{index}.weight", f"params/{name}/kernel", conv_kernel),
                (f"features.{index}.bias", f"params/{name}/bias", None),
            ]
            index += 1
            if batch_norm:
                bn, p = f"features.{index}", f"{name}_bn"
                rows += [
                    (f"{bn}.weight", f"params/{p}/scale", None),
                    (f"{bn}.bias", f"params/{p}/bias", None),
                    (f"{bn}.running_mean", f"batch_stats/{p}/mean", None),
                    (f"{bn}.running_var", f"batch_stats/{p}/var", None),
                ]
                index += 1
            index += 1  # ReLU
        index += 1  # MaxPool2d
    # classifier = [Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear]
    # fc6 and fc7 stay [out, in] (OutInDense); the head is flax's Dense, [in, out].
    for i, name, kernel in ((0, "fc6", fc6_kernel), (3, "fc7", None), (6, "head", transpose)):
        rows += [
            (f"classifier.{i}.weight", f"params/{name}/kernel", kernel),
            (f"classifier.{i}.bias", f"params/{name}/bias", None),
        ]
    return rows


def vgg_rules(depth: int = 16, batch_norm: bool = False) -> list[Rule]:
    """The rule table for one variant: literal keys (escaped), so nothing matches by accident."""
    rules = [Rule(re.escape(src), target, fn) for src, target, fn in _table(depth, batch_norm)]
    # Dropped on purpose: BatchNorm's step counter, unused in eval and by flax.
    return rules + [Rule(r"features\.\d+\.num_batches_tracked", None)]


@functools.cache
def _expected(depth: int, batch_norm: bool, num_classes: int | None) -> dict:
    model = VGG(depth=depth, batch_norm=batch_norm, num_classes=num_classes)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    return expected_shapes(shapes)


def convert_vgg(
    state_dict: dict[str, np.ndarray],
    depth: int = 16,
    batch_norm: bool = False,
    *,
    num_classes: int = 1000,
) -> dict:
    """A torchvision vgg{16,19}[_bn] state dict -> {"params": nested[, "batch_stats": nested]}.

    Shapes are checked against `VGG(depth, batch_norm, num_classes)`; one ConversionError names
    every missing source key, unexpected key and mis-shaped tensor.
    """
    state_dict = {k: np.asarray(v) for k, v in state_dict.items()}
    table = _table(depth, batch_norm)
    missing = [
        f"missing source key {src!r} (-> {t!r})" for src, t, _ in table if src not in state_dict
    ]
    try:
        variables = convert_variables(
            state_dict,
            vgg_rules(depth, batch_norm),
            _expected(depth, batch_norm, num_classes),
        )
    except ConversionError as e:
        raise ConversionError(missing + e.problems) from None
    return variables
