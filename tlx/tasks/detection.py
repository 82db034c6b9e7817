"""Detection: YOLOv3's loss, and COCO's mAP over the detections an evaluation collects.

The loss (tlx.detection.yolo_loss) is per image, so its sums add up over micro-batches, devices
and evaluation batches like every task's. mAP cannot be summed: a detection task *collects*, per
evaluated image, its detections after NMS and its ground truth (fixed shapes, padded, with
masks), and `summarize` hands them to pycocotools (tlx.detection.coco_eval) on the host. Boxes are
compared in the model input's pixels (IoU does not change under the resize, so mAP is the same as
in the images' own pixels). Evaluation keeps every detection above EVAL_SCORE_THRESHOLD, up to
EVAL_MAX_DETECTIONS per image, as COCO's protocol wants (a low threshold; precision at every recall).

The task needs the model's heads (anchors, classes): the experiment binds it with `for_model`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlx.tasks.base import batch_weights

EVAL_SCORE_THRESHOLD = 0.005  # darknet's `detector map` threshold
EVAL_MAX_DETECTIONS = 100  # COCO's maxDets
IOU_THRESHOLD = 0.45  # darknet's NMS


class Detection:
    name = "detection"
    sum_keys = ("loss_sum", "box_sum", "objectness_sum", "class_sum", "weight_sum")
    metric_names = ("mAP", "AP50", "AP75", "loss")
    collects = True  # evaluation gathers per-image rows (collect) for summarize

    def __init__(self, spec=None, label_names: Sequence[str] = ()):
        self.spec, self.label_names = spec, tuple(label_names)

    def for_model(self, bundle, label_names: Sequence[str]) -> Detection:
        """This task bound to a detector bundle's heads and the dataset's class names."""
        from tlx.detection.faster_rcnn import FasterRCNN

        if isinstance(bundle.module, FasterRCNN):
            return TwoStageDetection(label_names)
        if not hasattr(bundle.module, "spec"):
            raise ValueError(
                "config.task='detection' needs a detector: model.name='darknet_detector' or "
                "'faster_rcnn'."
            )
        return Detection(bundle.module.spec, label_names)

    def _raws(self, outputs):
        if self.spec is None:
            raise RuntimeError("Detection.for_model(bundle, label_names) binds the task first.")
        return tuple(outputs)

    def batch_sums(self, outputs, batch: Mapping) -> dict[str, jax.Array]:
        from tlx.detection.yolo_loss import yolo_loss

        losses = yolo_loss(
            self._raws(outputs), batch["boxes"], batch["labels"], batch["box_mask"], self.spec
        )
        weights = batch_weights(batch)
        return {
            "loss_sum": jnp.sum(losses["loss"] * weights),
            "box_sum": jnp.sum(losses["box"] * weights),
            "objectness_sum": jnp.sum(losses["objectness"] * weights),
            "class_sum": jnp.sum(losses["class"] * weights),
            "weight_sum": jnp.sum(weights),
        }

    def collect(self, outputs, batch: Mapping) -> dict[str, jax.Array]:
        """Per image: its detections (boxes, scores, classes, valid) and ground truth."""
        found = self.detect(outputs, EVAL_SCORE_THRESHOLD, EVAL_MAX_DETECTIONS)
        return {
            **found,
            "gt_boxes": batch["boxes"],
            "gt_labels": batch["labels"],
            "gt_mask": batch["box_mask"],
            "gt_difficult": batch.get("box_difficult", jnp.zeros_like(batch["box_mask"])),
            "weight": batch_weights(batch),
        }

    def detect(self, outputs, score_threshold: float, max_detections: int):
        from tlx.detection.yolo import detect

        size = (self.spec.height, self.spec.width)  # the model input's pixels
        raws = self._raws(outputs)
        return detect(raws, self.spec, size, score_threshold, IOU_THRESHOLD, max_detections)

    def summarize(self, sums: Mapping[str, float], collected=None) -> dict[str, float]:
        weight = max(float(sums["weight_sum"]), 1e-12)
        result = {}
        if collected:
            result.update(self.mean_average_precision(collected))
        result.update(
            {
                "loss": float(sums["loss_sum"]) / weight,
                "box_loss": float(sums["box_sum"]) / weight,
                "objectness_loss": float(sums["objectness_sum"]) / weight,
                "class_loss": float(sums["class_sum"]) / weight,
                "examples": int(round(float(sums["weight_sum"]))),
            }
        )
        return result

    def mean_average_precision(self, collected: Sequence[Mapping]) -> dict[str, float]:
        from tlx.detection.coco_eval import ImageResult, coco_metrics

        results = []
        for rows in collected:
            rows = {k: np.asarray(v) for k, v in rows.items()}
            for i in np.flatnonzero(rows["weight"] > 0):
                valid, gt = rows["valid"][i], rows["gt_mask"][i]
                results.append(
                    ImageResult(
                        gt_boxes=rows["gt_boxes"][i][gt],
                        gt_classes=rows["gt_labels"][i][gt],
                        boxes=rows["boxes"][i][valid],
                        scores=rows["scores"][i][valid],
                        classes=rows["classes"][i][valid],
                        gt_difficult=rows["gt_difficult"][i][gt],
                    )
                )
        names = self.label_names or tuple(str(k) for k in range(self.spec.num_classes))
        return coco_metrics(results, names)

    def headline(self, result: Mapping[str, float]) -> str:
        if "mAP" in result:
            return f"mAP {result['mAP']:.4f} AP50 {result['AP50']:.4f} loss {result['loss']:.3f}"
        return f"loss {result['loss']:.3f}"

    def predict(self, outputs) -> dict[str, jax.Array]:
        return self.detect(outputs, 0.25, EVAL_MAX_DETECTIONS)

    def predict_on_host(self, outputs: Any):
        return jax.tree.map(np.asarray, self.predict(outputs))

    def predictions(self, predicted, label_names: Sequence[str], top_k: int) -> list[dict]:
        """Per image: its detections, best first, boxes in the model input's pixels (tlx.predict
        maps them back to each image's own)."""
        del top_k  # every detection above the threshold is reported
        rows = []
        for i in range(len(predicted["valid"])):
            n = int(np.sum(predicted["valid"][i]))
            rows.append(
                {
                    "detections": [
                        {
                            "label": label_names[int(c)],
                            "class_id": int(c),
                            "score": float(s),
                            "box": [float(v) for v in box],
                        }
                        for c, s, box in zip(
                            predicted["classes"][i, :n],
                            predicted["scores"][i, :n],
                            predicted["boxes"][i, :n],
                        )
                    ]
                }
            )
        return rows

    def format_prediction(self, prediction: Mapping[str, Any]) -> str:
        from tlx.detection.report import format_detections

        return format_detections(prediction)


class TwoStageDetection(Detection):
    """Detection with Faster R-CNN (tlx.detection.faster_rcnn): the model computes its own
    losses (its proposals and samples depend on the ground truth), per image, and its detections
    (score > 0.05, class-wise NMS 0.5, 100 per image: torchvision's evaluation settings, which
    its COCO numbers use). Classes come out 1..C and are reported as the dataset's 0..C-1."""

    sum_keys = (
        "loss_sum", "rpn_objectness_sum", "rpn_box_sum", "roi_classifier_sum", "roi_box_sum",
        "weight_sum",
    )  # fmt: skip
    LOSSES = ("rpn_objectness", "rpn_box", "roi_classifier", "roi_box")

    def __init__(self, label_names: Sequence[str] = ()):
        super().__init__(None, label_names)

    def for_model(self, bundle, label_names: Sequence[str]) -> Detection:
        return TwoStageDetection(label_names)

    def batch_sums(self, outputs, batch: Mapping) -> dict[str, jax.Array]:
        weights = batch_weights(batch)
        sums = {f"{k}_sum": jnp.sum(outputs[k] * weights) for k in ("loss", *self.LOSSES)}
        return {**sums, "weight_sum": jnp.sum(weights)}

    def detect(self, outputs, score_threshold: float, max_detections: int):
        valid = outputs["valid"] & (outputs["scores"] > score_threshold)
        valid = valid & (jnp.arange(valid.shape[-1]) < max_detections)
        return {
            "boxes": outputs["boxes"],
            "scores": jnp.where(valid, outputs["scores"], 0.0),
            "classes": jnp.maximum(outputs["classes"] - 1, 0),
            "valid": valid,
        }

    def summarize(self, sums: Mapping[str, float], collected=None) -> dict[str, float]:
        weight = max(float(sums["weight_sum"]), 1e-12)
        result = self.mean_average_precision(collected) if collected else {}
        result["loss"] = float(sums["loss_sum"]) / weight
        for name in self.LOSSES:
            result[f"{name}_loss"] = float(sums[f"{name}_sum"]) / weight
        result["examples"] = int(round(float(sums["weight_sum"])))
        return result
