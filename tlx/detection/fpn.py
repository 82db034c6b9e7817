"""Feature Pyramid Network (Lin et al.) as torchvision builds it for Faster R-CNN.

Each backbone level gets a 1x1 lateral conv to `channels`; from the coarsest level down, the
running top-down map is upsampled (nearest) to the next level's size and added to its lateral;
each sum goes through a 3x3 conv. torchvision's LastLevelMaxPool then adds one coarser level, a
stride-2 subsampling of the coarsest output (max_pool2d with kernel 1), which the RPN uses and
the RoI heads do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def upsample_nearest(x, size: Sequence[int]):
    """[N, h, w, C] -> [N, H, W, C] as torch's F.interpolate(mode="nearest", size=(H, W)):
    output pixel i reads input floor(i * h / H)."""
    rows = np.minimum(np.floor(np.arange(size[0]) * (x.shape[1] / size[0])), x.shape[1] - 1)
    cols = np.minimum(np.floor(np.arange(size[1]) * (x.shape[2] / size[1])), x.shape[2] - 1)
    return x[:, rows.astype(np.int32)][:, :, cols.astype(np.int32)]


class FeaturePyramid(nn.Module):
    """features: backbone levels [N, H_l, W_l, C_l], finest first -> the pyramid's levels, each
    [N, H_l, W_l, channels], plus the max-pooled extra level when `extra_pool`."""

    channels: int = 256
    extra_pool: bool = True

    @nn.compact
    def __call__(self, features: Sequence[jnp.ndarray]) -> list[jnp.ndarray]:
        laterals = [
            nn.Conv(self.channels, (1, 1), name=f"inner_{i}")(f) for i, f in enumerate(features)
        ]
        top_down = laterals[-1]
        outputs = [None] * len(features)
        for i in range(len(features) - 1, -1, -1):
            if i < len(features) - 1:
                top_down = laterals[i] + upsample_nearest(top_down, laterals[i].shape[1:3])
            outputs[i] = nn.Conv(self.channels, (3, 3), padding=1, name=f"layer_{i}")(top_down)
        if self.extra_pool:
            outputs.append(outputs[-1][:, ::2, ::2])  # max_pool2d(kernel 1, stride 2)
        return outputs
