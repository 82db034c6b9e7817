"""YOLO outputs -> detections: darknet's decoding of each [yolo] layer, then class-aware NMS.

`decode_yolo` is darknet's get_yolo_detections (and OpenCV's region layer): sigmoid offsets in the
grid cell, exp-scaled anchors, sigmoid objectness and per-class sigmoids. `detect` scores each box
by its best class (objectness x class probability, OpenCV's and most YOLO tools' rule), keeps
those above a threshold and runs class-aware NMS; every shape is static, so it jits with the model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tlx.detection.boxes import cxcywh_to_xyxy
from tlx.detection.nms import batched_nms
from tlx.models.darknet_cfg import DarknetSpec, Yolo


def decode_yolo(raw, layer: Yolo, input_size: tuple[int, int]) -> dict[str, jax.Array]:
    """One [yolo] layer's raw output [B, H, W, A * (5 + C)] -> "boxes" [B, H, W, A, 4] as
    (cx, cy, w, h) in fractions of the input, "objectness" [B, H, W, A] and "class_probs"
    [B, H, W, A, C] (each class's own sigmoid, not yet times objectness).

    input_size: the network's (height, width) in pixels, which the anchors are measured in.
    """
    b, h, w, _ = raw.shape
    anchors = jnp.asarray(layer.anchors, jnp.float32)  # [A, 2] (w, h) in pixels
    t = raw.reshape(b, h, w, len(layer.anchors), 5 + layer.classes).astype(jnp.float32)
    scale = layer.scale_x_y
    xy = jax.nn.sigmoid(t[..., :2]) * scale - (scale - 1) / 2
    grid_x, grid_y = jnp.meshgrid(jnp.arange(w), jnp.arange(h))
    cx = (grid_x[None, :, :, None] + xy[..., 0]) / w
    cy = (grid_y[None, :, :, None] + xy[..., 1]) / h
    bw = jnp.exp(t[..., 2]) * anchors[:, 0] / input_size[1]
    bh = jnp.exp(t[..., 3]) * anchors[:, 1] / input_size[0]
    return {
        "boxes": jnp.stack([cx, cy, bw, bh], axis=-1),
        "objectness": jax.nn.sigmoid(t[..., 4]),
        "class_probs": jax.nn.sigmoid(t[..., 5:]),
    }


def flatten_predictions(raws, spec: DarknetSpec) -> dict[str, jax.Array]:
    """Every [yolo] layer decoded and joined: "boxes" [B, N, 4] (cxcywh fractions), "objectness"
    [B, N], "class_probs" [B, N, C]; N runs over layers, then rows, columns and anchors (OpenCV's
    order of its yolo outputs' rows)."""
    decoded = [
        decode_yolo(raw, spec.layers[i], (spec.height, spec.width))
        for raw, i in zip(raws, spec.yolo_indices)
    ]
    batch = raws[0].shape[0]
    return {
        key: jnp.concatenate([d[key].reshape(batch, -1, *d[key].shape[4:]) for d in decoded], 1)
        for key in ("boxes", "objectness", "class_probs")
    }


def detect(
    raws,
    spec: DarknetSpec,
    image_size: tuple[int, int],
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
) -> dict[str, jax.Array]:
    """Raw [yolo] outputs -> per image "boxes" [B, K, 4] xyxy in pixels of `image_size`
    (height, width), "scores" [B, K], "classes" [B, K] and "valid" [B, K], K = max_detections,
    best first. Boxes are scaled straight to the image (the plain-resize input recipe)."""
    flat = flatten_predictions(raws, spec)
    scores_all = flat["objectness"][..., None] * flat["class_probs"]
    classes = jnp.argmax(scores_all, axis=-1)
    scores = jnp.max(scores_all, axis=-1)
    height, width = image_size
    boxes = cxcywh_to_xyxy(flat["boxes"]) * jnp.asarray([width, height, width, height], jnp.float32)

    def one_image(boxes, scores, classes):
        keep, mask = batched_nms(
            boxes, scores, classes, iou_threshold, max_detections, scores > score_threshold
        )
        return boxes[keep], jnp.where(mask, scores[keep], 0.0), classes[keep], mask

    boxes, scores, classes, valid = jax.vmap(one_image)(boxes, scores, classes)
    return {"boxes": boxes, "scores": scores, "classes": classes, "valid": valid}
