"""Faster R-CNN's second stage as torchvision's RoIHeads: pooled proposals -> two-layer MLP ->
class logits and per-class box deltas -> detections, with static shapes.

`detect_boxes` follows torchvision's postprocess_detections (softmax, per-class decoding with
weights (10, 10, 5, 5), clipping, background dropped, score > 0.05, boxes under 1e-2 dropped,
class-wise NMS at 0.5, the best 100) with one static step added: before NMS only the
`candidates` best (proposal, class) pairs are kept (torchvision keeps all of them, up to
1,000 x 90 for COCO, too many for a fixed-size NMS). Greedy NMS decides each box from the boxes
scored above it, so the result equals torchvision's whenever NMS keeps at least
`detections_per_image` boxes among the candidates or every pair above the threshold is a
candidate.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from tlx.detection.boxes import decode_boxes
from tlx.detection.nms import batched_nms
from tlx.detection.rpn import clip_boxes

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # torchvision's RoIHeads box coder


class BoxHead(nn.Module):
    """torchvision's TwoMLPHead and FastRCNNPredictor: pooled [R, 7, 7, C] -> (class logits
    [R, num_classes], box deltas [R, num_classes, 4]). Class 0 is the background.

    fc6 reads the pooled features flattened in NHWC order (7, 7, C); torchvision's flattens
    (C, 7, 7), which the converter permutes its weight for."""

    num_classes: int
    hidden: int = 1024

    @nn.compact
    def __call__(self, pooled):
        x = pooled.reshape(pooled.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden, name="fc6")(x))
        x = nn.relu(nn.Dense(self.hidden, name="fc7")(x))
        logits = nn.Dense(self.num_classes, name="cls_score")(x)
        deltas = nn.Dense(self.num_classes * 4, name="bbox_pred")(x)
        return logits, deltas.reshape(-1, self.num_classes, 4)


@dataclasses.dataclass(frozen=True)
class DetectionSettings:
    """torchvision's evaluation defaults (box_score_thresh, box_nms_thresh, box_detections_per_img),
    its fixed minimum box side, and the candidate cap this static version adds."""

    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    detections_per_image: int = 100
    min_size: float = 1e-2
    candidates: int = 2000


def detect_boxes(
    logits, deltas, proposals, proposal_mask, image_size, settings=DetectionSettings()
):
    """One image: logits [R, K], deltas [R, K, 4], proposals [R, 4] (mask [R]) -> dict of
    "boxes" [D, 4], "scores" [D], "classes" [D] (1..K-1) and "valid" [D], best first."""
    num_classes = logits.shape[-1]
    boxes = decode_boxes(deltas, proposals[:, None, :], BOX_WEIGHTS)
    boxes = clip_boxes(boxes, image_size)[:, 1:].reshape(-1, 4)  # background dropped
    scores = jax.nn.softmax(logits, axis=-1)[:, 1:].reshape(-1)
    classes = jnp.tile(jnp.arange(1, num_classes), logits.shape[0])
    wide = (boxes[:, 2] - boxes[:, 0]) >= settings.min_size
    tall = (boxes[:, 3] - boxes[:, 1]) >= settings.min_size
    real = jnp.repeat(proposal_mask, num_classes - 1)
    valid = real & wide & tall & (scores > settings.score_threshold)
    k = min(settings.candidates, scores.shape[0])
    _, top = jax.lax.top_k(jnp.where(valid, scores, -1.0), k)
    keep, mask = batched_nms(
        boxes[top],
        scores[top],
        classes[top],
        settings.nms_threshold,
        settings.detections_per_image,
        valid[top],
    )
    chosen = top[keep]
    return {
        "boxes": jnp.where(mask[:, None], boxes[chosen], 0.0),
        "scores": jnp.where(mask, scores[chosen], 0.0),
        "classes": jnp.where(mask, classes[chosen], 0),
        "valid": mask,
    }
