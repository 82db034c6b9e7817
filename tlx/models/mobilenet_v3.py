"""MobileNetV3-Large (Howard et al., torchvision's architecture) in flax.linen, NHWC.

Submodule names mirror torchvision's `features.N` so its state dict converts by one table
(tlx/weights/torchvision_mobilenet_v3.py): `features.4.block.2.fc1` becomes
`features_4/se/fc1`. Blocks are inverted residuals with an optional 1x1 expansion, a k x k
depthwise conv, optional squeeze-and-excitation (hard-sigmoid gate) and a linear 1x1 projection;
activations ReLU or hard-swish as the table says. BatchNorm's epsilon is 1e-3 in the ImageNet
classifier and 1e-5 in torchvision's detectors (FrozenBatchNorm2d): `bn_epsilon`.

Every block's output is sown into "intermediates" as "block_<i>", each stage's end also as
"stem", "stage_1" ... "stage_5" (strides 2, 2, 4, 8, 16, 32) and "last_conv" (stride 32, 960).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tlx.models.dropout import Dropout
from tlx.models.mobilenet_v2 import _make_divisible, conv_layer
from tlx.models.pooling import global_pool

# (kernel, expanded, out, squeeze-excite, activation, stride): torchvision's mobilenet_v3_large.
LARGE = (
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hardswish", 2),
    (3, 200, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 480, 112, True, "hardswish", 1),
    (3, 672, 112, True, "hardswish", 1),
    (5, 672, 160, True, "hardswish", 2),
    (5, 960, 160, True, "hardswish", 1),
    (5, 960, 160, True, "hardswish", 1),
)
STAGES = ((1,), (2, 3), (4, 5, 6), (7, 8, 9, 10, 11, 12), (13, 14, 15))  # blocks by stride
LAST_CONV = 16


def hardswish(x):
    return x * jnp.clip(x + 3, 0, 6) / 6


def hardsigmoid(x):
    return jnp.clip(x + 3, 0, 6) / 6


ACTIVATIONS = {"relu": nn.relu, "hardswish": hardswish, None: lambda x: x}


class ConvNormAct(nn.Module):
    """torchvision's Conv2dNormActivation: conv (no bias) -> BatchNorm -> activation."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    activation: str | None = "hardswish"
    bn_epsilon: float = 1e-3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = conv_layer(x, self.features, self.kernel_size, self.stride, self.groups, self.dtype)
        x = nn.BatchNorm(momentum=0.99, epsilon=self.bn_epsilon, dtype=self.dtype, name="bn")(
            x, use_running_average=not train
        )  # momentum 0.99 here is torch's momentum=0.01, mobilenet_v3's
        return ACTIVATIONS[self.activation](x)


class SqueezeExcite(nn.Module):
    """Global average -> 1x1 conv -> ReLU -> 1x1 conv -> hard-sigmoid gate on the channels."""

    squeeze: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.relu(nn.Conv(self.squeeze, (1, 1), dtype=self.dtype, name="fc1")(s))
        s = nn.Conv(x.shape[-1], (1, 1), dtype=self.dtype, name="fc2")(s)
        return x * hardsigmoid(s)


class InvertedResidualV3(nn.Module):
    in_features: int
    kernel_size: int
    expanded: int
    out_features: int
    squeeze_excite: bool
    activation: str
    stride: int
    bn_epsilon: float = 1e-3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = {"bn_epsilon": self.bn_epsilon, "dtype": self.dtype}
        y = x
        if self.expanded != self.in_features:
            y = ConvNormAct(self.expanded, 1, activation=self.activation, name="expand", **common)(
                y, train=train
            )
        y = ConvNormAct(
            self.expanded, self.kernel_size, self.stride, groups=self.expanded,
            activation=self.activation, name="depthwise", **common,
        )(y, train=train)  # fmt: skip
        if self.squeeze_excite:
            squeeze = _make_divisible(self.expanded // 4, 8)
            y = SqueezeExcite(squeeze, dtype=self.dtype, name="se")(y)
        y = ConvNormAct(self.out_features, 1, activation=None, name="project", **common)(
            y, train=train
        )
        if self.stride == 1 and self.in_features == self.out_features:
            y = x + y
        return y


class MobileNetV3(nn.Module):
    """torchvision's mobilenet_v3_large; `num_classes=None` returns the last conv's features
    pooled by `pooling` (None: the feature map)."""

    num_classes: int | None = 1000
    pooling: str | None = "avg"
    dropout: float = 0.2
    bn_epsilon: float = 1e-3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = {"bn_epsilon": self.bn_epsilon, "dtype": self.dtype}
        x = x.astype(self.dtype)
        x = ConvNormAct(16, 3, 2, name="features_0", **common)(x, train=train)
        self.sow("intermediates", "stem", x)
        in_features = 16
        ends = {blocks[-1]: f"stage_{i}" for i, blocks in enumerate(STAGES, start=1)}
        for index, (k, expanded, out, se, act, stride) in enumerate(LARGE, start=1):
            x = InvertedResidualV3(
                in_features, k, expanded, out, se, act, stride, name=f"features_{index}", **common
            )(x, train=train)
            in_features = out
            self.sow("intermediates", f"block_{index}", x)
            if index in ends:
                self.sow("intermediates", ends[index], x)
        x = ConvNormAct(6 * in_features, 1, name=f"features_{LAST_CONV}", **common)(x, train=train)
        self.sow("intermediates", "last_conv", x)
        if self.num_classes is None:
            return global_pool(x, self.pooling)
        x = jnp.mean(x, axis=(1, 2))
        x = hardswish(nn.Dense(1280, dtype=self.dtype, name="classifier_0")(x))
        x = Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier_3")(x)


def mobilenet_v3_param_groups() -> list[tuple[str, str]]:
    """Ordered input -> output groups: stem | the five stride stages | last_conv | head."""
    groups = [("stem", r"^features_0/")]
    for i, blocks in enumerate(STAGES, start=1):
        groups.append((f"stage_{i}", rf"^features_(?:{'|'.join(map(str, blocks))})/"))
    groups.append(("last_conv", rf"^features_{LAST_CONV}/"))
    groups.append(("head", r"^classifier_[03]/"))
    return groups
