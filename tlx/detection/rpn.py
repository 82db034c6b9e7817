"""Region proposal network (Ren et al.) as torchvision's RPN, with static shapes.

The head, shared by every pyramid level, scores each anchor (one logit) and regresses its box (4
deltas). Proposals are chosen per image as torchvision's `filter_proposals` does: the top
`pre_nms_top_n` logits of each level, decoded against their anchors, clipped to the image, boxes
under `min_size` dropped, NMS within each level, the best `post_nms_top_n` kept. Every count is
fixed (the top-k sizes, NMS's output) and dropped boxes are masked rather than removed, so one
compiled program serves every image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from tlx.detection.boxes import decode_boxes
from tlx.detection.nms import batched_nms


class RPNHead(nn.Module):
    """Pyramid levels [N, H_l, W_l, C] -> (logits [N, sum H_l W_l A], deltas [N, ..., 4]), in
    the anchors' order (row, column, anchor) and level by level, finest first."""

    anchors_per_position: int

    @nn.compact
    def __call__(self, levels: Sequence[jnp.ndarray]):
        a = self.anchors_per_position
        conv = nn.Conv(levels[0].shape[-1], (3, 3), padding=1, name="conv")
        cls_logits = nn.Conv(a, (1, 1), name="cls_logits")
        bbox_pred = nn.Conv(4 * a, (1, 1), name="bbox_pred")
        logits, deltas = [], []
        for x in levels:
            hidden = nn.relu(conv(x))
            n = x.shape[0]
            logits.append(cls_logits(hidden).reshape(n, -1))
            deltas.append(bbox_pred(hidden).reshape(n, -1, 4))  # channel a * 4 + k
        return jnp.concatenate(logits, 1), jnp.concatenate(deltas, 1)


@dataclasses.dataclass(frozen=True)
class ProposalSettings:
    """torchvision's defaults for evaluation; training keeps 2,000 before and after NMS."""

    pre_nms_top_n: int = 1000  # per level
    post_nms_top_n: int = 1000  # per image
    nms_threshold: float = 0.7
    min_size: float = 1e-3
    score_threshold: float = 0.0


def clip_boxes(boxes, image_size):
    """Clip xyxy boxes to an image of (height, width) (traced values allowed)."""
    height, width = image_size[0], image_size[1]
    x = jnp.clip(boxes[..., 0::2], 0, width)
    y = jnp.clip(boxes[..., 1::2], 0, height)
    return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


def _top_per_level(logits, counts: Sequence[int], top_n: int):
    """Indices of the top min(top_n, count) logits of each level, level by level, and the level
    of each: torchvision's _get_top_n_idx for one image."""
    indices, levels, start = [], [], 0
    for level, count in enumerate(counts):
        k = min(top_n, count)
        _, top = jax.lax.top_k(logits[start : start + count], k)
        indices.append(top + start)
        levels.append(jnp.full((k,), level, jnp.int32))
        start += count
    return jnp.concatenate(indices), jnp.concatenate(levels)


def select_proposals(
    logits, deltas, anchors, counts: Sequence[int], image_size, settings=ProposalSettings()
):
    """One image: logits [A], deltas [A, 4], anchors [A, 4] (`counts` per level) ->
    (boxes [post_nms_top_n, 4], scores (sigmoid) [post_nms_top_n], mask [post_nms_top_n]),
    best first; masked slots are padding."""
    chosen, level = _top_per_level(logits, counts, settings.pre_nms_top_n)
    boxes = clip_boxes(decode_boxes(deltas[chosen], jnp.asarray(anchors)[chosen]), image_size)
    scores = jax.nn.sigmoid(logits[chosen])
    wide = (boxes[:, 2] - boxes[:, 0]) >= settings.min_size
    tall = (boxes[:, 3] - boxes[:, 1]) >= settings.min_size
    valid = wide & tall & (scores >= settings.score_threshold)
    keep, mask = batched_nms(
        boxes, scores, level, settings.nms_threshold, settings.post_nms_top_n, valid
    )
    return boxes[keep], jnp.where(mask, scores[keep], 0.0), mask
