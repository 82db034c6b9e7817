"""A small CNN trained from scratch: the classic Keras MNIST network, in flax.linen, NHWC.

conv_1 (32 3x3, ReLU) -> conv_2 (64 3x3, ReLU) -> 2x2 max pool -> dropout 0.25 -> flatten ->
dense (128, ReLU) -> dropout 0.5 -> head. Convolutions are unpadded ("VALID", as Keras'
``mnist_cnn.py``), so a 28x28 input gives 26, 24 and 12x12x64 = 9,216 features into `dense`
(1.2 M parameters in all, nearly all of them in `dense`). The baseline a transfer run on a
28x28 dataset should beat: trained to convergence it reaches about 0.91-0.92 test accuracy on
all of Fashion-MNIST (the dataset authors' benchmark lists from-scratch CNNs at 0.90-0.95).

BatchNorm is off by default (`batch_norm=True` adds one after each conv, in `conv_<i>_bn`). The
network is shallow enough that AdamW at 1e-3 trains it reliably without it, and without it the
model has no running statistics: evaluation equals training with dropout off, and it behaves the
same under every `model.batchnorm` policy (with BatchNorm, a from-scratch run needs
``model.batchnorm = "train"``; under the default "frozen" it would normalise with the initial
statistics, mean 0 and variance 1, and never learn them).

`num_classes=None` drops `dense` and the head (Keras' include_top=False) and returns the pooled
feature map by `pooling`. Endpoints sown in "intermediates": "conv_1_relu", "conv_2_pool" (after
the max pool) and "dense_relu" (with a classifier).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tlx.models.dropout import Dropout
from tlx.models.pooling import global_pool

# Sown in "intermediates" (flax refuses a sown name equal to a submodule's, hence the suffixes).
SMALL_CNN_ENDPOINTS = ("conv_1_relu", "conv_2_pool", "dense_relu")


class SmallCNN(nn.Module):
    """conv32 - conv64 - maxpool - dropout - dense128 - dropout - head, from random init."""

    num_classes: int | None = 10
    pooling: str | None = "avg"  # with num_classes=None: "avg" | "max" | None (the feature map)
    widths: tuple[int, int] = (32, 64)
    dense_width: int = 128
    conv_dropout: float = 0.25  # after the max pool
    dropout: float = 0.5  # before the head
    batch_norm: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = x.astype(self.dtype)
        for i, width in enumerate(self.widths, start=1):
            name = f"conv_{i}"
            x = nn.Conv(width, (3, 3), padding="VALID", dtype=self.dtype, name=name)(x)
            if self.batch_norm:
                x = nn.BatchNorm(momentum=0.9, epsilon=1e-5, dtype=self.dtype, name=f"{name}_bn")(
                    x,
                    use_running_average=not train,  # at call time: interceptable
                )
            x = nn.relu(x)
            if i < len(self.widths):
                self.sow("intermediates", f"{name}_relu", x)
            else:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
                self.sow("intermediates", f"{name}_pool", x)
        if self.num_classes is None:
            return global_pool(x, self.pooling)
        x = Dropout(self.conv_dropout)(x, deterministic=not train)
        x = x.reshape(x.shape[0], -1)  # (H, W, C) order
        x = nn.relu(nn.Dense(self.dense_width, dtype=self.dtype, name="dense")(x))
        self.sow("intermediates", "dense_relu", x)
        x = Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)


def small_cnn_param_groups(
    *, widths: tuple[int, ...] = (32, 64), include_top: bool = True
) -> list[tuple[str, str]]:
    """Ordered input -> output groups of regexes over '/'-joined param paths: conv_1, conv_2
    (each conv with its BatchNorm), then dense and head when `include_top`."""
    groups = [(f"conv_{i}", rf"^conv_{i}(?:_bn)?/") for i in range(1, len(widths) + 1)]
    if include_top:
        groups += [("dense", r"^dense/"), ("head", r"^head/")]
    return groups
