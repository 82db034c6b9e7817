"""Faster R-CNN's input transform, as torchvision's GeneralizedRCNNTransform: normalise, resize so
the short side is `min_size` unless the long side would pass `max_size`, pad to a multiple of 32.

The resize runs per image before batching (its output size depends on the image), so it is host
code; the model then sees one padded canvas. torchvision's rules, kept for the converted weights:
- scale = min(min_size / short side, max_size / long side), in double precision (eager
  torchvision; its scripted and traced paths use float32 and can differ by a pixel);
- output size floor(side * scale) (recompute_scale_factor=True), bilinear with half-pixel
  centres (align_corners=False) and no antialiasing: jax.image.resize(..., antialias=False);
- zero padding (after normalisation) at the bottom and right, to a multiple of 32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class RCNNTransform:
    min_size: int = 800
    max_size: int = 1333
    size_divisible: int = 32
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        short, long = min(height, width), max(height, width)
        scale = min(self.min_size / short, self.max_size / long)  # Python floats, as eager torch
        return math.floor(height * scale), math.floor(width * scale)

    def padded_size(self, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
        d = self.size_divisible
        return tuple(int(math.ceil(max(s[i] for s in sizes) / d) * d) for i in (0, 1))

    def image(self, image) -> jnp.ndarray:
        """One float image [H, W, 3] in [0, 1] -> normalised and resized [h, w, 3]."""
        image = jnp.asarray(image, jnp.float32)
        normalised = (image - jnp.asarray(self.mean)) / jnp.asarray(self.std)
        size = self.resized_size(*image.shape[:2])
        return jax.image.resize(normalised, (*size, 3), "bilinear", antialias=False)

    def batch(self, images: Sequence, padded_size: tuple[int, int] | None = None):
        """Float images in [0, 1] -> (canvas [N, Hp, Wp, 3], resized sizes [N, 2] as (h, w),
        per-image scale back to the original pixels [N, 2] as (sy, sx)). `padded_size` fixes the
        canvas (training's static shape); default: the batch's largest, rounded up to 32."""
        resized = [self.image(x) for x in images]
        sizes = [x.shape[:2] for x in resized]
        canvas_size = padded_size or self.padded_size(sizes)
        if any(h > canvas_size[0] or w > canvas_size[1] for h, w in sizes):
            raise ValueError(
                f"a resized image {max(sizes)} does not fit the canvas {canvas_size}; the canvas "
                f"must hold max_size={self.max_size} on both sides"
            )
        canvas = np.zeros((len(images), *canvas_size, 3), np.float32)
        for i, x in enumerate(resized):
            canvas[i, : x.shape[0], : x.shape[1]] = np.asarray(x)
        original = np.array([np.shape(x)[:2] for x in images], np.float32)
        resized_sizes = np.array(sizes, np.float32)
        return canvas, resized_sizes, original / resized_sizes
