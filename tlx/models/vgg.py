"""VGG16 / VGG19, with or without BatchNorm (torchvision's architecture), in flax.linen, NHWC.

Names follow Keras' applications (`block1_conv1` ... `block5_conv3`), which also read cleanly
against torchvision's `features.N` indices; BatchNorm layers (the `_bn` variants) are
`block1_conv1_bn`, statistics in the `batch_stats` collection. The classifier is `fc6`, `fc7`
(Keras' fc1 / fc2, torchvision's classifier.0 / .3) and `head` (predictions / classifier.6).

Two details decide numerical equality with torchvision:
- torchvision resizes block5's output to 7x7 with AdaptiveAvgPool2d before flattening;
  :func:`adaptive_avg_pool` reproduces its bins exactly (224 inputs give 7x7 already, 32x32 inputs
  give a 1x1 map that is replicated).
- The flatten is NHWC, i.e. (H, W, C) order, like Keras; torchvision flattens (C, H, W), so the
  converter permutes fc6's input axis (tlx/weights/torchvision_vgg.py).
tests/models/test_vgg.py and tests/models/test_keras_vgg.py prove both sources equal.

fc6 and fc7 keep their kernels [out, in] (torch's Linear layout; flax's Dense is [in, out]): see
:class:`OutInDense` for why.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tlx.models.dropout import Dropout
from tlx.models.pooling import global_pool

# 3x3 convs per block (64, 128, 256, 512, 512 channels), each block ends with a 2x2 max pool.
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
CONVS_PER_BLOCK = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
# Sown in "intermediates": block<b> after its max pool (Keras' block<b>_pool, torchvision's
# features up to that pool); fc6_relu / fc7_relu after fc6's / fc7's ReLU (before Dropout), only
# with a classifier (flax refuses a sown name equal to a submodule's, hence not plain "fc6").
VGG_ENDPOINTS = ("block1", "block2", "block3", "block4", "block5", "fc6_relu", "fc7_relu")
POOLED_SIZE = 7  # torchvision's AdaptiveAvgPool2d((7, 7)); fc6 takes 7 * 7 * 512 inputs
FC_WIDTH = 4096


def adaptive_pool_matrix(size: int, out: int = POOLED_SIZE) -> np.ndarray:
    """[out, size] averaging weights of torch's adaptive average pooling along one axis.

    Bin i spans [floor(i * size / out), ceil((i + 1) * size / out)); bins overlap when `size` is
    not a multiple of `out` and repeat a pixel when `size < out`.
    """
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        start, end = (i * size) // out, math.ceil((i + 1) * size / out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: jax.Array, out: int = POOLED_SIZE) -> jax.Array:
    """torch's AdaptiveAvgPool2d((out, out)) on an NHWC array (identity when already out x out).

    Written as two small averaging matmuls, which is exact (static shapes) and cheap.
    """
    h, w = x.shape[1], x.shape[2]
    if h == out and w == out:
        return x
    mh = jnp.asarray(adaptive_pool_matrix(h, out), x.dtype)
    mw = jnp.asarray(adaptive_pool_matrix(w, out), x.dtype)
    return jnp.einsum("ih,bhwc,jw->bijc", mh, x, mw, precision=jax.lax.Precision.HIGHEST)


class OutInDense(nn.Module):
    """nn.Dense with its kernel stored [out, in] (torch's Linear layout), y = x @ kernel.T + bias.

    Why: at a small batch fc6 (8 x 25088 @ 25088 x 4096, 411 MB of weights) only streams its
    kernel, and XLA's CPU dot streams an [out, in] kernel about 2.5x faster than flax's [in, out]
    one (40 against 104 ms at batch 8; experiments/results/README.md). Before, the forward of a
    frozen VGG (feature extraction) spent a quarter of its time in fc6 and fc7.
    """

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(in_axis=-1, out_axis=-2),  # fan-in is the last axis
            (self.features, x.shape[-1]),
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (1,)), ((), ())))
        return y + bias


class VGG(nn.Module):
    """torchvision's vgg16 / vgg19 (`batch_norm=True`: vgg16_bn / vgg19_bn).

    `num_classes=None` drops fc6, fc7 and the head (Keras' include_top=False) and pools block5's
    output with `pooling` ("avg", "max", or None for the feature map itself).
    """

    depth: int = 16
    batch_norm: bool = False
    num_classes: int | None = 1000
    pooling: str | None = "avg"
    dropout: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if self.depth not in CONVS_PER_BLOCK:
            raise ValueError(
                f"VGG depth must be one of {sorted(CONVS_PER_BLOCK)}, got {self.depth}"
            )
        x = x.astype(self.dtype)
        for b, (width, convs) in enumerate(zip(BLOCK_WIDTHS, CONVS_PER_BLOCK[self.depth]), 1):
            for i in range(1, convs + 1):
                name = f"block{b}_conv{i}"
                x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=name)(x)
                if self.batch_norm:
                    x = nn.BatchNorm(
                        momentum=0.9,  # torch's momentum=0.1
                        epsilon=1e-5,
                        dtype=self.dtype,
                        name=f"{name}_bn",
                    )(x, use_running_average=not train)  # at call time: interceptable
                x = nn.relu(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))  # floors odd sizes, like torch
            self.sow("intermediates", f"block{b}", x)

        if self.num_classes is None:
            return global_pool(x, self.pooling)

        x = adaptive_avg_pool(x)
        x = x.reshape(x.shape[0], -1)  # (H, W, C) order; see the module docstring
        for name in ("fc6", "fc7"):
            x = nn.relu(OutInDense(FC_WIDTH, dtype=self.dtype, name=name)(x))
            self.sow("intermediates", f"{name}_relu", x)
            x = Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)


def vgg_param_groups(*, include_top: bool = True) -> list[tuple[str, str]]:
    """Ordered input -> output groups of regexes over '/'-joined param paths: block1 ... block5
    (convs and their BatchNorms), then fc6, fc7, head when `include_top` (num_classes not None)."""
    groups = [(f"block{b}", rf"^block{b}_") for b in range(1, 6)]
    if include_top:
        groups += [("fc6", r"^fc6/"), ("fc7", r"^fc7/"), ("head", r"^head/")]
    return groups
