"""Detection metrics with COCO's own evaluation (pycocotools), on the host.

`coco_metrics` takes what an evaluation collected, per image: the ground truth (boxes, classes,
VOC's difficult flags) and the detections (boxes, scores, classes), boxes xyxy in one pixel frame,
and returns mAP@[.5:.95], AP50, AP75 (COCO's 101-point interpolation, up to 100 detections per
image), AR@100 and each class's AP, as pycocotools computes them. Difficult objects are
"iscrowd" for pycocotools: matching one neither helps nor hurts, as VOC's rule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class ImageResult:
    """One image's ground truth and detections, numpy, boxes xyxy in pixels."""

    gt_boxes: np.ndarray  # [G, 4]
    gt_classes: np.ndarray  # [G] int
    boxes: np.ndarray  # [D, 4]
    scores: np.ndarray  # [D]
    classes: np.ndarray  # [D] int
    gt_difficult: np.ndarray | None = None  # [G] bool


def _xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)


def coco_metrics(results: Sequence[ImageResult], class_names: Sequence[str]) -> dict[str, float]:
    """{"mAP", "AP50", "AP75", "AR100", "AP/<class>" ...}; a class without ground truth in
    `results` gets no AP entry (pycocotools reports -1 there) and does not count in the means."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections = [], [], []
    for image_id, r in enumerate(results, start=1):
        images.append({"id": image_id})
        difficult = np.zeros(len(r.gt_classes), bool) if r.gt_difficult is None else r.gt_difficult
        for box, cls, hard in zip(_xywh(r.gt_boxes), r.gt_classes, difficult):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                    "iscrowd": int(bool(hard)),
                }
            )
        for box, score, cls in zip(_xywh(r.boxes), r.scores, r.classes):
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "bbox": box.tolist(),
                    "score": float(score),
                }
            )
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations, "categories": categories}
        truth.createIndex()
        predicted = truth.loadRes(detections) if detections else COCO()
        if not detections:
            predicted.dataset = {"images": images, "annotations": [], "categories": categories}
            predicted.createIndex()
        evaluation = COCOeval(truth, predicted, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    metrics = {
        "mAP": _zero_if_absent(stats[0]),
        "AP50": _zero_if_absent(stats[1]),
        "AP75": _zero_if_absent(stats[2]),
        "AR100": _zero_if_absent(stats[8]),
    }
    # precision: [iou thresholds, recall points, classes, area ranges, max detections]
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    for k, name in enumerate(class_names):
        values = precision[:, :, k]
        if np.any(values > -1):
            metrics[f"AP/{name}"] = float(np.mean(values[values > -1]))
    return metrics


def _zero_if_absent(value: float) -> float:
    """pycocotools' -1 (nothing to evaluate) as 0.0, so means and tables stay numeric."""
    return max(float(value), 0.0)
