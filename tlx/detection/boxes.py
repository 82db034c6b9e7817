"""Box arithmetic in JAX, every function shape-static and batched over leading axes.

Boxes are (x0, y0, x1, y1) ("xyxy", torchvision's convention) unless a name says "cxcywh". Areas
have no +1 (torchvision, OpenCV's Rect2d and pycocotools agree). Tested against torchvision.ops.
"""

from __future__ import annotations

import math

import jax.numpy as jnp


def cxcywh_to_xyxy(boxes):
    cx, cy, w, h = jnp.moveaxis(boxes, -1, 0)
    return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def xyxy_to_cxcywh(boxes):
    x0, y0, x1, y1 = jnp.moveaxis(boxes, -1, 0)
    return jnp.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=-1)


def box_area(boxes):
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _intersection_union(a, b):
    """a [..., N, 4], b [..., M, 4] -> intersection and union areas [..., N, M]."""
    top_left = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
    bottom_right = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = jnp.clip(bottom_right - top_left, 0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
    return inter, union


def box_iou(a, b):
    """Pairwise IoU, [..., N, 4] x [..., M, 4] -> [..., N, M]; 0 where both boxes are empty."""
    inter, union = _intersection_union(a, b)
    return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)


def generalized_box_iou(a, b):
    """Pairwise GIoU (Rezatofighi et al.): IoU - (enclosing area - union) / enclosing area."""
    inter, union = _intersection_union(a, b)
    iou = jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)
    top_left = jnp.minimum(a[..., :, None, :2], b[..., None, :, :2])
    bottom_right = jnp.maximum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = jnp.clip(bottom_right - top_left, 0)
    enclosing = wh[..., 0] * wh[..., 1]
    safe = jnp.where(enclosing > 0, enclosing, 1)
    return iou - jnp.where(enclosing > 0, (enclosing - union) / safe, 0.0)


def encode_boxes(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """torchvision's BoxCoder.encode: xyxy boxes against xyxy anchors -> (dx, dy, dw, dh) deltas."""
    wx, wy, ww, wh = weights
    a = xyxy_to_cxcywh(anchors)
    b = xyxy_to_cxcywh(boxes)
    return jnp.stack(
        [
            wx * (b[..., 0] - a[..., 0]) / a[..., 2],
            wy * (b[..., 1] - a[..., 1]) / a[..., 3],
            ww * jnp.log(b[..., 2] / a[..., 2]),
            wh * jnp.log(b[..., 3] / a[..., 3]),
        ],
        axis=-1,
    )


BOX_DELTA_CLAMP = math.log(1000.0 / 16)  # torchvision's bbox_xform_clip: no box grows over 62.5x


def decode_boxes(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), clamp=BOX_DELTA_CLAMP):
    """torchvision's BoxCoder.decode: deltas against xyxy anchors -> xyxy boxes (dw, dh clamped)."""
    wx, wy, ww, wh = weights
    a = xyxy_to_cxcywh(anchors)
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw = jnp.minimum(deltas[..., 2] / ww, clamp)
    dh = jnp.minimum(deltas[..., 3] / wh, clamp)
    cx, cy = dx * a[..., 2] + a[..., 0], dy * a[..., 3] + a[..., 1]
    w, h = jnp.exp(dw) * a[..., 2], jnp.exp(dh) * a[..., 3]
    return cxcywh_to_xyxy(jnp.stack([cx, cy, w, h], axis=-1))
