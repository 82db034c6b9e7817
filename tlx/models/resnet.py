"""ResNet-18/34/50/101/152 (torchvision's, "v1.5") in flax.linen, NHWC.

v1.5 means the Bottleneck's stride sits on its 3x3 conv, not on the first 1x1 as in the original
paper; torchvision's ImageNet weights expect that. Submodule names mirror torchvision's state dict
so the conversion table reads one-to-one: `layer2.0.downsample.1.running_var` becomes
`batch_stats/layer2_0/downsample_1/var`, `fc.weight` becomes `params/fc/kernel` (transposed).
BatchNorm statistics live in the `batch_stats` collection. tests/models/test_resnet.py proves
eval mode equal to torchvision's, block by block.

The output of the stem and of each stage is sown into the `intermediates` collection under the
names in RESNET_ENDPOINTS (strides 4, 4, 8, 16, 32), for detection backbones and feature probes:
`model.apply(variables, x, mutable=["intermediates"])`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tlx.models.pooling import check_pooling, global_pool

RESNET_ENDPOINTS = ("stem", "layer1", "layer2", "layer3", "layer4")
ENDPOINT_STRIDES = {"stem": 4, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}

# depth -> (block kind, blocks per stage), torchvision's table.
RESNET_CONFIGS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # block width per stage; Bottleneck outputs 4x this


def _conv(features: int, k: int, stride: int, dtype: Any, name: str) -> nn.Conv:
    # torchvision pads k//2 on every side; 'SAME' would pad (0, 1) at stride 2 on even inputs.
    pad = k // 2
    return nn.Conv(
        features,
        (k, k),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        dtype=dtype,
        name=name,
    )


def _bn(train: bool, dtype: Any, name: str):
    # momentum 0.9 here is torch's momentum=0.1 (flax weights the old statistic).
    # use_running_average goes in at call time, so an interceptor can freeze the statistics.
    bn = nn.BatchNorm(momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)
    return functools.partial(bn, use_running_average=not train)


def stem_max_pool(x):
    """torchvision's MaxPool2d(3, stride=2, padding=1). flax pads with -inf, as torch does, so the
    border never wins a max (it follows a ReLU here, but the pool is tested on its own too)."""
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class BasicBlock(nn.Module):
    """3x3 -> 3x3 with identity (or 1x1 conv + BN projection) shortcut; ResNet-18/34."""

    features: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = jnp.float32

    expansion = 1

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        y = _conv(self.features, 3, self.stride, self.dtype, "conv1")(x)
        y = nn.relu(_bn(train, self.dtype, "bn1")(y))
        y = _conv(self.features, 3, 1, self.dtype, "conv2")(y)
        y = _bn(train, self.dtype, "bn2")(y)
        if self.downsample:
            x = _conv(self.features, 1, self.stride, self.dtype, "downsample_0")(x)
            x = _bn(train, self.dtype, "downsample_1")(x)
        return nn.relu(x + y)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided, v1.5) -> 1x1 expand (4x); ResNet-50/101/152."""

    features: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = jnp.float32

    expansion = 4

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        out = self.features * self.expansion
        y = _conv(self.features, 1, 1, self.dtype, "conv1")(x)
        y = nn.relu(_bn(train, self.dtype, "bn1")(y))
        y = _conv(self.features, 3, self.stride, self.dtype, "conv2")(y)
        y = nn.relu(_bn(train, self.dtype, "bn2")(y))
        y = _conv(out, 1, 1, self.dtype, "conv3")(y)
        y = _bn(train, self.dtype, "bn3")(y)
        if self.downsample:
            x = _conv(out, 1, self.stride, self.dtype, "downsample_0")(x)
            x = _bn(train, self.dtype, "downsample_1")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    """torchvision's resnet{18,34,50,101,152}.

    `num_classes=None` drops `fc` (include_top=False) and returns the `pooling` of the last
    feature map: "avg" or "max" -> [N, C], None -> the [N, H/32, W/32, C] map itself.
    """

    depth: int = 50
    num_classes: int | None = 1000
    pooling: str | None = "avg"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if self.depth not in RESNET_CONFIGS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_CONFIGS)}: {self.depth}")
        check_pooling(self.pooling)
        kind, blocks = RESNET_CONFIGS[self.depth]
        block_cls = BasicBlock if kind == "basic" else Bottleneck

        x = x.astype(self.dtype)
        x = _conv(64, 7, 2, self.dtype, "conv1")(x)
        x = nn.relu(_bn(train, self.dtype, "bn1")(x))
        x = stem_max_pool(x)
        self.sow("intermediates", "stem", x)

        in_ch = 64
        for stage, (width, n) in enumerate(zip(STAGE_WIDTHS, blocks), start=1):
            for i in range(n):
                stride = 2 if stage > 1 and i == 0 else 1
                downsample = i == 0 and (stride != 1 or in_ch != width * block_cls.expansion)
                x = block_cls(
                    width,
                    stride=stride,
                    downsample=downsample,
                    dtype=self.dtype,
                    name=f"layer{stage}_{i}",
                )(x, train=train)
                in_ch = width * block_cls.expansion
            self.sow("intermediates", f"layer{stage}", x)

        if self.num_classes is None:
            return global_pool(x, self.pooling)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


def resnet_param_groups() -> list[tuple[str, str]]:
    """Ordered input -> output groups of regexes over '/'-joined param paths, one per endpoint
    plus the classifier: stem (conv1, bn1), layer1 .. layer4, head (fc)."""
    groups = [("stem", r"^(?:conv1|bn1)/")]
    groups += [(f"layer{i}", rf"^layer{i}_\d+/") for i in range(1, 5)]
    groups.append(("head", r"^fc/"))
    return groups
