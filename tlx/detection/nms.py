"""Greedy non-maximum suppression with static shapes, so it runs under jit and vmap.

`nms` visits the boxes in descending score order and keeps a box unless a kept box overlaps it
with IoU above the threshold (torchvision.ops.nms and OpenCV's NMSBoxes, which agree). The result
is always `max_output` indices plus a mask of which are real, in score order: shapes never depend
on the data. The O(N^2) IoU matrix is fine for the few thousand candidates detectors keep.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tlx.detection.boxes import box_iou


def nms(boxes, scores, iou_threshold: float, max_output: int, valid=None):
    """boxes [N, 4] xyxy, scores [N] -> (indices [max_output] into boxes, mask [max_output]).

    `valid` [N] bool excludes padded or below-threshold candidates. Padded slots hold index 0
    and mask False.
    """
    n = boxes.shape[0]
    valid = jnp.ones(n, bool) if valid is None else valid
    # Invalid candidates last, then by descending score; stable, so ties keep input order.
    order = jnp.lexsort((-scores, ~valid))
    sorted_boxes, sorted_valid = boxes[order], valid[order]
    overlaps = box_iou(sorted_boxes, sorted_boxes) > iou_threshold

    # The IoU matrix is symmetric to the bit (min, max and a commutative sum), so box i's
    # overlaps are read as row i: contiguous, where column i strides across the whole matrix
    # (7x faster for training's 3,875 RPN candidates x 8 images on XLA:CPU).
    def visit(i, keep):  # keep[j] is still False for every j >= i
        suppressed = jnp.any(keep & overlaps[i])
        return keep.at[i].set(sorted_valid[i] & ~suppressed)

    keep = jax.lax.fori_loop(0, n, visit, jnp.zeros(n, bool))
    (positions,) = jnp.nonzero(keep, size=max_output, fill_value=0)
    mask = jnp.arange(max_output) < keep.sum()
    return jnp.where(mask, order[positions], 0), mask


def batched_nms(boxes, scores, classes, iou_threshold: float, max_output: int, valid=None):
    """Class-aware NMS (torchvision.ops.batched_nms): boxes of different classes never suppress
    each other. Each class is shifted to its own region of the plane, one greedy pass for all."""
    span = jnp.max(jnp.abs(boxes)) * 2 + 1
    shifted = boxes + (classes.astype(boxes.dtype) * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_output, valid)
