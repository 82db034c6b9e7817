"""keras.applications VGG16 / VGG19 weights (as read by `read_keras_h5`) -> tlx's VGG `params`.

Keras already stores conv kernels HWIO and Dense kernels [in, out], and its Flatten runs over a
channels-last 7x7x512 map, the (H, W, C) order tlx uses, so tensors are copied as they are but for
fc1 / fc2, transposed to tlx's [out, in] fc6 / fc7 kernels (tlx.models.vgg.OutInDense); the
names change (fc1 -> fc6, fc2 -> fc7, predictions -> head). Both downloads are accepted: the
include_top file and the `_notop` file (convs only; load it into `VGG(num_classes=None)`).

Keras' VGG expects caffe-style inputs (BGR channel order, ImageNet mean subtracted, no scaling),
not torchvision's RGB mean/std normalisation; the model catalog applies the right preprocessing,
this module only moves weights.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np

from tlx.models.vgg import CONVS_PER_BLOCK, VGG
from tlx.weights.rules import ConversionError, Rule, convert_variables, expected_shapes, transpose

_TOP = (("fc1", "fc6"), ("fc2", "fc7"), ("predictions", "head"))


_OUT_IN = ("fc6", "fc7")  # tlx layers whose kernel is [out, in]


def _table(depth: int, include_top: bool) -> list[tuple[str, str]]:
    """(Keras key, target) for every tensor the file must hold."""
    if depth not in CONVS_PER_BLOCK:
        raise ValueError(f"VGG depth must be one of {sorted(CONVS_PER_BLOCK)}, got {depth}")
    layers = [
        (f"block{b}_conv{i}",) * 2
        for b, convs in enumerate(CONVS_PER_BLOCK[depth], 1)
        for i in range(1, convs + 1)
    ]
    layers += list(_TOP) if include_top else []
    return [(f"{src}/{w}", f"params/{dst}/{w}") for src, dst in layers for w in ("kernel", "bias")]


def _is_out_in_kernel(target: str) -> bool:
    layer, weight = target.split("/")[-2:]
    return layer in _OUT_IN and weight == "kernel"


@functools.cache
def _expected(depth: int, num_classes: int | None) -> dict:
    model = VGG(depth=depth, num_classes=num_classes)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    return expected_shapes(shapes)


def convert_keras_vgg(
    weights: dict[str, np.ndarray],
    depth: int = 16,
    *,
    include_top: bool | None = None,
    num_classes: int = 1000,
) -> dict:
    """keras.applications VGG{16,19} weights -> {"params": nested}.

    `include_top=None` decides from the file: any fc1 / fc2 / predictions tensor means the
    include_top file (and then all of them must be there). Shapes are checked against
    `VGG(depth, num_classes=num_classes)` (or `num_classes=None` without the top); one
    ConversionError names every missing, unexpected or mis-shaped tensor.
    """
    if include_top is None:
        include_top = any(k.split("/")[0] in dict(_TOP) for k in weights)
    table = _table(depth, include_top)
    missing = [f"missing source key {src!r} (-> {t!r})" for src, t in table if src not in weights]
    rules = [
        Rule(re.escape(src), target, transpose if _is_out_in_kernel(target) else None)
        for src, target in table
    ]
    expected = _expected(depth, num_classes if include_top else None)
    try:
        return convert_variables(weights, rules, expected)
    except ConversionError as e:
        raise ConversionError(missing + e.problems) from None
