"""YOLOv3's training targets and loss, with static shapes (padded ground truth plus a mask).

Targets (Redmon & Farhadi, YOLOv3, and darknet's yolo_layer.c): each ground-truth box goes to the
one anchor, over every [yolo] layer, whose shape fits it best (IoU of boxes sharing a centre), in
the grid cell holding its centre. That cell and anchor learn the box (centre offset in the cell,
log of size over anchor), objectness 1 and the class; a prediction anywhere else learns
objectness 0, unless its decoded box already overlaps some ground truth by more than
`ignore_threshold` (darknet's ignore_thresh, 0.7): good guesses by the wrong anchor are not
punished.

Loss per image, summed over cells (darknet sums; divide by the batch outside):
  box: (2 - w*h) * [squared error of the sigmoid centre offsets and of the log sizes], w, h as
       fractions of the input (darknet's scale: small boxes count more);
  objectness and classes: binary cross-entropy with logits (classes independent, as YOLOv3).
Boxes are in the model input's pixels (tlx.detection.inputs maps them), xyxy.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from tlx.detection.boxes import box_iou, xyxy_to_cxcywh
from tlx.detection.yolo import decode_yolo
from tlx.models.darknet_cfg import DarknetSpec

IGNORE_THRESHOLD = 0.7


@dataclasses.dataclass(frozen=True)
class LayerTargets:
    """One [yolo] layer's targets, each [H, W, A, ...] for one image."""

    positive: jax.Array  # bool [H, W, A]: a ground truth is assigned here
    offsets: jax.Array  # [H, W, A, 2]: the centre's position in its cell, in [0, 1)
    log_sizes: jax.Array  # [H, W, A, 2]: log(box w, h / anchor w, h)
    box_scale: jax.Array  # [H, W, A]: 2 - w * h (fractions of the input)
    classes: jax.Array  # [H, W, A, C] one-hot


def all_anchors(spec: DarknetSpec) -> tuple[jax.Array, list[tuple[int, int]]]:
    """Every [yolo] layer's anchors stacked, [K, 2] (w, h) pixels, and each row's (layer, slot)."""
    anchors, owner = [], []
    for layer_number, index in enumerate(spec.yolo_indices):
        for slot, anchor in enumerate(spec.layers[index].anchors):
            anchors.append(anchor)
            owner.append((layer_number, slot))
    return jnp.asarray(anchors, jnp.float32), owner


def best_anchors(sizes: jax.Array, anchors: jax.Array) -> jax.Array:
    """[G, 2] box (w, h), [K, 2] anchors -> [G] index of the anchor of highest shape IoU."""
    inter = jnp.prod(jnp.minimum(sizes[:, None], anchors[None]), axis=-1)
    union = jnp.prod(sizes, -1)[:, None] + jnp.prod(anchors, -1)[None] - inter
    return jnp.argmax(inter / union, axis=-1)


def assign_targets(boxes, classes, mask, spec: DarknetSpec) -> list[LayerTargets]:
    """One image's ground truth, boxes [G, 4] xyxy in input pixels, classes [G], mask [G] (False:
    padding) -> each [yolo] layer's LayerTargets. Two boxes on one cell and anchor: the later wins
    (as darknet)."""
    anchors, owner = all_anchors(spec)
    centre_size = xyxy_to_cxcywh(boxes.astype(jnp.float32))
    sizes = jnp.maximum(centre_size[:, 2:], 1e-3)
    best = best_anchors(sizes, anchors)
    size_in = jnp.asarray([spec.width, spec.height], jnp.float32)
    targets = []
    for layer_number, index in enumerate(spec.yolo_indices):
        layer = spec.layers[index]
        h, w = spec.shapes[index][:2]
        count = len(layer.anchors)
        slots = jnp.asarray([s if n == layer_number else -1 for n, s in owner])[best]
        grid = centre_size[:, :2] / size_in * jnp.asarray([w, h], jnp.float32)
        cell = jnp.clip(jnp.floor(grid).astype(jnp.int32), 0, jnp.asarray([w - 1, h - 1]))
        here = mask & (slots >= 0)
        # Flat index of (row, column, slot); boxes of other layers or padding go out of range
        # and are dropped by the scatter.
        flat = (cell[:, 1] * w + cell[:, 0]) * count + jnp.maximum(slots, 0)
        flat = jnp.where(here, flat, h * w * count)
        layer_anchors = jnp.asarray(layer.anchors, jnp.float32)[jnp.maximum(slots, 0)]
        fraction = sizes / size_in

        def scatter(values, fill=0.0, flat=flat, cells=h * w * count):
            shape = (cells, *values.shape[1:])
            return jnp.full(shape, fill, values.dtype).at[flat].set(values, mode="drop")

        one_hot = jax.nn.one_hot(classes, layer.classes)
        targets.append(
            LayerTargets(
                positive=scatter(here, False).reshape(h, w, count),
                offsets=scatter(grid - cell).reshape(h, w, count, 2),
                log_sizes=scatter(jnp.log(sizes / layer_anchors)).reshape(h, w, count, 2),
                box_scale=scatter(2 - fraction[:, 0] * fraction[:, 1]).reshape(h, w, count),
                classes=scatter(one_hot).reshape(h, w, count, layer.classes),
            )
        )
    return targets


def yolo_loss_one_image(
    raws, boxes, classes, mask, spec: DarknetSpec, ignore_threshold: float = IGNORE_THRESHOLD
) -> dict[str, jax.Array]:
    """One image's raw [yolo] outputs (each [H, W, A * (5 + C)]) and ground truth -> its "box",
    "objectness" and "class" losses and their sum "loss" (scalars)."""
    targets = assign_targets(boxes, classes, mask, spec)
    size = (spec.height, spec.width)
    scale_px = jnp.asarray([spec.width, spec.height] * 2, jnp.float32)
    box_loss = objectness_loss = class_loss = 0.0
    for raw, target, index in zip(raws, targets, spec.yolo_indices):
        layer = spec.layers[index]
        h, w = raw.shape[:2]
        t = raw.reshape(h, w, len(layer.anchors), 5 + layer.classes).astype(jnp.float32)
        decoded = decode_yolo(raw[None], layer, size)
        cx, cy, bw, bh = jnp.moveaxis(decoded["boxes"][0], -1, 0)
        predicted = jnp.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1) * scale_px
        overlap = box_iou(predicted.reshape(-1, 4), boxes.astype(jnp.float32))
        best_overlap = jnp.max(jnp.where(mask[None], overlap, 0.0), axis=-1).reshape(h, w, -1)
        positive = target.positive.astype(jnp.float32)
        negative = (~target.positive & (best_overlap <= ignore_threshold)).astype(jnp.float32)
        s = layer.scale_x_y
        offsets = jax.nn.sigmoid(t[..., :2]) * s - (s - 1) / 2
        squared = jnp.sum((offsets - target.offsets) ** 2, -1)
        squared += jnp.sum((t[..., 2:4] - target.log_sizes) ** 2, -1)
        box_loss += jnp.sum(positive * target.box_scale * squared)
        objectness = optax.sigmoid_binary_cross_entropy(t[..., 4], target.positive)
        objectness_loss += jnp.sum((positive + negative) * objectness)
        per_class = optax.sigmoid_binary_cross_entropy(t[..., 5:], target.classes)
        class_loss += jnp.sum(positive[..., None] * per_class)
    total = box_loss + objectness_loss + class_loss
    return {"loss": total, "box": box_loss, "objectness": objectness_loss, "class": class_loss}


def yolo_loss(raws, boxes, classes, mask, spec: DarknetSpec, ignore_threshold=IGNORE_THRESHOLD):
    """A batch: raws each [B, H, W, A * (5 + C)], boxes [B, G, 4], classes [B, G], mask [B, G] ->
    per-image losses, each [B] (sum and divide by the batch, or weight, outside)."""

    def one(raws, boxes, classes, mask):
        return yolo_loss_one_image(raws, boxes, classes, mask, spec, ignore_threshold)

    return jax.vmap(one)(tuple(raws), boxes, classes, mask)
