"""Anchor boxes of a feature pyramid, by torchvision's AnchorGenerator.

Anchors depend only on shapes, so they are numpy constants built at trace time: nothing about them
is traced, and the same shapes always give the same array.

torchvision's conventions, which the converted RPN heads were trained on:
- base anchors are centred on 0 and rounded to whole pixels: round([-w, -h, w, h] / 2) with
  w = size / sqrt(ratio), h = size * sqrt(ratio) (ratio = height / width);
- ordered ratio-major, then size (ws = w_ratios[:, None] * sizes[None, :]);
- a level's stride is padded image size // feature size (integer), per axis;
- anchors run over the feature map row by row, then over the base anchors at each position: the
  order of an NHWC head's outputs reshaped to [H * W * A].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def base_anchors(sizes: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
    """[len(ratios) * len(sizes), 4] xyxy anchors centred on (0, 0), rounded."""
    sizes_ = np.asarray(sizes, np.float32)
    h_ratios = np.sqrt(np.asarray(ratios, np.float32))
    w_ratios = np.float32(1) / h_ratios
    ws = (w_ratios[:, None] * sizes_[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * sizes_[None, :]).reshape(-1)
    return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2).astype(np.float32)


def level_anchors(
    feature_size: Sequence[int], stride: Sequence[int], base: np.ndarray
) -> np.ndarray:
    """[H * W * A, 4]: `base` ([A, 4]) shifted to every position of an H x W feature map."""
    (height, width), (stride_h, stride_w) = feature_size, stride
    shift_y, shift_x = np.meshgrid(
        np.arange(height, dtype=np.float32) * stride_h,
        np.arange(width, dtype=np.float32) * stride_w,
        indexing="ij",
    )
    shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=-1).reshape(-1, 1, 4)
    return (shifts + base[None]).reshape(-1, 4)


def pyramid_anchors(
    feature_sizes: Sequence[Sequence[int]],
    padded_size: Sequence[int],
    sizes: Sequence[Sequence[float]],
    ratios: Sequence[Sequence[float]],
) -> tuple[np.ndarray, list[int]]:
    """(every level's anchors concatenated, finest first: [sum H_l W_l A_l, 4]; the count per
    level). `padded_size` is the batch's (h, w) after padding, which sets each level's stride."""
    if not len(feature_sizes) == len(sizes) == len(ratios):
        raise ValueError(
            f"anchor sizes for {len(sizes)} levels and ratios for {len(ratios)} levels, but the "
            f"pyramid has {len(feature_sizes)}: give one tuple of each per level"
        )
    levels = []
    for feature_size, level_sizes, level_ratios in zip(feature_sizes, sizes, ratios):
        stride = [p // f for p, f in zip(padded_size, feature_size)]
        levels.append(level_anchors(feature_size, stride, base_anchors(level_sizes, level_ratios)))
    return np.concatenate(levels), [len(a) for a in levels]
