"""RoIAlign and its multi-scale form in JAX, by torchvision's rules, with static shapes.

torchvision.ops.roi_align (He et al.'s RoIAlign as Detectron implemented it) averages, in each of
the output's bins, a fixed grid of bilinear samples. Its rules, kept here because the converted
Faster R-CNN heads were trained on them:
- with aligned=False (Faster R-CNN's setting) no half-pixel offset, and an RoI is at least 1x1;
- a sample outside [-1, size] reads 0; one in [-1, 0] reads the border; the last row and column
  are not interpolated past;
- a fixed sampling_ratio (2 in Faster R-CNN). torchvision's adaptive count (ceil(roi / bin))
  depends on the box, so under jit it would need the largest grid for every box: not offered.

`multiscale_roi_align` is torchvision's MultiScaleRoIAlign: each box is read from one pyramid level
chosen by its size (Lin et al., FPN, eq. 1). All levels are flattened into one array, so each box
costs one gather whatever its level, rather than one per level.

The gradient (with respect to the features only: torchvision's roi_align has none for the boxes,
which Faster R-CNN detaches anyway) is its own (`_pool`, a custom_vjp). Autodiff's transpose of
the gather is a scatter-add, the slow part of a Faster R-CNN training step on XLA:CPU (1.6 of
the 2.0 s of RoIAlign forward and backward for training's 512 RoIs x 8 images at 320 px, 2-core
Zen 4). RoIAlign is linear in the features and each bin's weights factor into a y part and an x
part, so its Jacobian is a matrix K [RoIs x bins, H x W] built from two small ones, and the
gradient one matrix product, K^T @ g (0.2 s for the same batch). K grows with the level's
pixels, so a level over DENSE_GRADIENT_PIXELS (a 1,600-pixel level: 160 MB for 512 RoIs) keeps
the scatter-add.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

DENSE_GRADIENT_PIXELS = 1024  # levels up to 32 x 32 take the matrix-product gradient


def _sample_points(start, bin_size, pooled: int, sampling: int):
    """[R] starts and bin sizes -> [R, pooled * sampling] sample coordinates along one axis, in
    torchvision's order of operations (start + bin * size + ((i + 0.5) * size) / sampling), so
    the float32 coordinates are the same to the bit."""
    bins = jnp.arange(pooled, dtype=start.dtype)
    samples = jnp.arange(sampling, dtype=start.dtype) + 0.5
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    points = start + bins[None, :, None] * bin_size + samples[None, None, :] * bin_size / sampling
    return points.reshape(start.shape[0], pooled * sampling)  # bin-major, then sample


def _corners(coord, size):
    """torchvision's bilinear_interpolate along one axis: (low, high, weight_low, weight_high,
    inside) for sample coordinates and a per-sample axis length (both [R, S])."""
    inside = (coord >= -1.0) & (coord <= size)
    coord = jnp.maximum(coord, 0.0)
    low = jnp.floor(coord)
    at_end = low >= size - 1
    low = jnp.where(at_end, size - 1, low)
    high = jnp.where(at_end, size - 1, low + 1)
    coord = jnp.where(at_end, low, coord)
    frac = coord - low
    return low.astype(jnp.int32), high.astype(jnp.int32), 1.0 - frac, frac, inside


def _roi_frame(boxes, scale, aligned: bool):
    """[R, 4] image-space boxes -> (x0, y0, width, height) on a feature level, by torchvision's
    rules: scaled, shifted half a pixel when aligned, and (when not) at least 1x1. The one place
    for them, so the forward gather and the gradient's Jacobian cannot drift apart."""
    shift = 0.5 if aligned else 0.0
    x0, y0, x1, y1 = (boxes[:, i] * scale - shift for i in range(4))
    roi_w, roi_h = x1 - x0, y1 - y0
    if not aligned:  # torchvision forces malformed RoIs to 1x1
        roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
    return x0, y0, roi_w, roi_h


def _roi_align_flat(
    flat, boxes, scale, height, width, offset, output_size, sampling_ratio, aligned
):
    """The shared kernel. flat [P, C] holds every level's pixels; for each box [R] its level's
    scale, height, width and offset of its first pixel in `flat`. -> [R, oh, ow, C]."""
    out_h, out_w = output_size
    x0, y0, roi_w, roi_h = _roi_frame(boxes, scale, aligned)
    ys = _sample_points(y0, roi_h / out_h, out_h, sampling_ratio)  # [R, oh * s]
    xs = _sample_points(x0, roi_w / out_w, out_w, sampling_ratio)  # [R, ow * s]
    h = jnp.broadcast_to(height[:, None].astype(ys.dtype), ys.shape)
    w = jnp.broadcast_to(width[:, None].astype(xs.dtype), xs.shape)
    y_lo, y_hi, wy_lo, wy_hi, y_in = _corners(ys, h)
    x_lo, x_hi, wx_lo, wx_hi, x_in = _corners(xs, w)
    row_base = offset[:, None] + 0 * y_lo  # [R, Sy]

    def read(rows, cols):  # [R, Sy], [R, Sx] -> [R, Sy, Sx, C]
        index = (row_base + rows * width[:, None])[:, :, None] + cols[:, None, :]
        return flat[index]

    inside = (y_in[:, :, None] & x_in[:, None, :])[..., None]
    value = (
        (wy_lo[:, :, None] * wx_lo[:, None, :])[..., None] * read(y_lo, x_lo)
        + (wy_lo[:, :, None] * wx_hi[:, None, :])[..., None] * read(y_lo, x_hi)
        + (wy_hi[:, :, None] * wx_lo[:, None, :])[..., None] * read(y_hi, x_lo)
        + (wy_hi[:, :, None] * wx_hi[:, None, :])[..., None] * read(y_hi, x_hi)
    )
    value = jnp.where(inside, value, 0.0)
    r, c = boxes.shape[0], flat.shape[-1]
    value = value.reshape(r, out_h, sampling_ratio, out_w, sampling_ratio, c)
    return value.mean(axis=(2, 4))


def _axis_weights(start, roi_size, pooled: int, sampling: int, size: int):
    """[R] RoI starts and sizes along one axis -> [R, pooled, size]: each output bin's weight on
    each input pixel of that axis, its samples' bilinear weights averaged (zero outside)."""
    points = _sample_points(start, roi_size / pooled, pooled, sampling)  # [R, pooled * s]
    low, high, w_low, w_high, inside = _corners(points, jnp.full(points.shape, size))
    pixels = jnp.arange(size)
    w_low, w_high = jnp.where(inside, w_low, 0.0), jnp.where(inside, w_high, 0.0)
    weights = w_low[..., None] * (low[..., None] == pixels)
    weights = weights + w_high[..., None] * (high[..., None] == pixels)
    return weights.reshape(start.shape[0], pooled, sampling, size).mean(axis=2)


@dataclasses.dataclass(frozen=True)
class _PoolSpec:
    """The static part of a (multi-scale) RoIAlign: per level its scale, and the level rule."""

    scales: tuple[float, ...]
    output_size: tuple[int, int]
    sampling_ratio: int
    aligned: bool
    level_rule: tuple | None = None  # (k_min, k_max, canonical_size, canonical_level)

    def levels(self, boxes):
        if self.level_rule is None:
            return jnp.zeros(boxes.shape[0], jnp.int32)
        return box_levels(boxes, *self.level_rule)

    def read_level(self, features, boxes, level: int, take):
        """The gather on one level [H, W, C] for the boxes `take` marks (zero for the others)."""
        height, width, channels = features.shape
        per_box = lambda v, dtype: jnp.full(boxes.shape[:1], v, dtype)  # noqa: E731
        out = _roi_align_flat(
            features.reshape(height * width, channels),
            boxes,
            per_box(self.scales[level], boxes.dtype),
            per_box(height, jnp.int32),
            per_box(width, jnp.int32),
            per_box(0, jnp.int32),
            self.output_size,
            self.sampling_ratio,
            self.aligned,
        )
        return jnp.where(take[:, None, None, None], out, 0.0)

    def jacobian(self, boxes, level: int, height: int, width: int, take):
        """K [R * oh * ow, H * W]: d(output bins) / d(one level's pixels), for each channel."""
        out_h, out_w = self.output_size
        x0, y0, roi_w, roi_h = _roi_frame(boxes, self.scales[level], self.aligned)
        ay = _axis_weights(y0, roi_h, out_h, self.sampling_ratio, height)
        ay = jnp.where(take[:, None, None], ay, 0.0)
        ax = _axis_weights(x0, roi_w, out_w, self.sampling_ratio, width)
        k = ay[:, :, None, :, None] * ax[:, None, :, None, :]  # [R, oh, ow, H, W]
        return k.reshape(boxes.shape[0] * out_h * out_w, height * width)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _pool(features: tuple, boxes, spec: _PoolSpec):
    """features: levels [H_l, W_l, C]; boxes [R, 4] -> [R, oh, ow, C], one gather for all."""
    level = spec.levels(boxes)
    sizes = [f.shape[0] * f.shape[1] for f in features]
    table = lambda values, dtype: jnp.asarray(values, dtype)[level]  # noqa: E731
    return _roi_align_flat(
        jnp.concatenate([f.reshape(-1, f.shape[-1]) for f in features]),
        boxes,
        table(spec.scales, boxes.dtype),
        table([f.shape[0] for f in features], jnp.int32),
        table([f.shape[1] for f in features], jnp.int32),
        table([sum(sizes[:i]) for i in range(len(sizes))], jnp.int32),
        spec.output_size,
        spec.sampling_ratio,
        spec.aligned,
    )


def _pool_forward(features, boxes, spec):
    return _pool(features, boxes, spec), (features, boxes)


def _pool_backward(spec, residuals, grad):
    features, boxes = residuals
    level = spec.levels(boxes)
    grads = []
    for i, f in enumerate(features):
        height, width, channels = f.shape
        if height * width <= DENSE_GRADIENT_PIXELS:
            k = spec.jacobian(boxes, i, height, width, level == i).astype(grad.dtype)
            grads.append((k.T @ grad.reshape(k.shape[0], channels)).reshape(f.shape))
        else:  # autodiff's scatter-add: K would not fit
            _, transpose = jax.vjp(lambda x: spec.read_level(x, boxes, i, level == i), f)  # noqa: B023
            grads.append(transpose(grad)[0])
    return tuple(grads), jnp.zeros_like(boxes)


_pool.defvjp(_pool_forward, _pool_backward)


def _check(output_size, sampling_ratio) -> tuple[int, int]:
    if sampling_ratio <= 0:
        raise ValueError(
            f"roi_align needs a fixed sampling_ratio > 0 (got {sampling_ratio}): the adaptive "
            "count depends on each box, which has no static shape; Faster R-CNN uses 2"
        )
    return (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)


def roi_align(
    features,
    boxes,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = False,
):
    """features [H, W, C] (one image, NHWC), boxes [R, 4] xyxy in image coordinates ->
    [R, oh, ow, C], as torchvision.ops.roi_align on one image's boxes."""
    output_size = _check(output_size, sampling_ratio)
    spec = _PoolSpec((float(spatial_scale),), output_size, sampling_ratio, bool(aligned))
    return _pool((features,), boxes, spec)


def infer_scale(feature_size: Sequence[int], image_size: Sequence[int]) -> float:
    """torchvision's _infer_scale: the power of two nearest feature / image size (per axis, the
    same on both, else the pyramid does not fit the image)."""
    scales = [2.0 ** round(math.log2(f / i)) for f, i in zip(feature_size, image_size)]
    if scales[0] != scales[1]:
        raise ValueError(
            f"a feature map {tuple(feature_size)} is not a power-of-two reduction of the image "
            f"{tuple(image_size)} on both axes"
        )
    return scales[0]


def box_levels(boxes, k_min: int, k_max: int, canonical_size=224.0, canonical_level=4):
    """FPN's level for each box (torchvision's LevelMapper): floor(4 + log2(sqrt(area) / 224)),
    clamped to the pyramid; returned as an index from k_min."""
    size = jnp.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    level = jnp.floor(canonical_level + jnp.log2(size / canonical_size) + 1e-6)
    return (jnp.clip(level, k_min, k_max) - k_min).astype(jnp.int32)


def multiscale_roi_align(
    features: Sequence,
    boxes,
    image_size: Sequence[int],
    output_size=7,
    sampling_ratio: int = 2,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
):
    """features: pyramid levels [H_l, W_l, C], finest first, of one (padded) image whose
    unpadded size is image_size (h, w); boxes [R, 4] -> [R, oh, ow, C] (MultiScaleRoIAlign)."""
    output_size = _check(output_size, sampling_ratio)
    scales = tuple(infer_scale(f.shape[:2], image_size) for f in features)
    if len(features) == 1:
        return roi_align(features[0], boxes, output_size, scales[0], sampling_ratio)
    k_min, k_max = round(-math.log2(scales[0])), round(-math.log2(scales[-1]))
    rule = (k_min, k_max, float(canonical_size), canonical_level)
    return _pool(
        tuple(features), boxes, _PoolSpec(scales, output_size, sampling_ratio, False, rule)
    )
