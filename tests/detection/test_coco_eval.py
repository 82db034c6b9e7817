"""coco_metrics: COCO's evaluation on cases whose AP is known by hand."""

import numpy as np
import pytest

from tlx.detection.coco_eval import ImageResult, coco_metrics

pytest.importorskip("pycocotools")
NAMES = ("cat", "dog")


def result(gt, gt_classes, boxes, scores, classes, difficult=None):
    return ImageResult(
        np.asarray(gt, float).reshape(-1, 4),
        np.asarray(gt_classes),
        np.asarray(boxes, float).reshape(-1, 4),
        np.asarray(scores, float),
        np.asarray(classes),
        None if difficult is None else np.asarray(difficult),
    )


def test_perfect_detections_score_one_and_none_score_zero():
    gt = [[10, 10, 50, 60], [60, 20, 90, 90]]
    perfect = result(gt, [0, 1], gt, [0.9, 0.8], [0, 1])
    metrics = coco_metrics([perfect, perfect], NAMES)
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["AP/dog"] == pytest.approx(1.0)
    empty = coco_metrics([result(gt, [0, 1], [], [], [])], NAMES)
    assert empty["mAP"] == 0.0 and empty["AP50"] == 0.0


def test_iou_of_0_62_counts_at_three_of_ten_thresholds():
    # One 100x100 box; the detection is shifted by 23.5 px: IoU = 76.5*100 / 123.5*100 = 0.619,
    # a hit at thresholds 0.50, 0.55 and 0.60 of the ten: mAP = 0.3, AP50 = 1, AP75 = 0.
    r = result([[0, 0, 100, 100]], [0], [[23.5, 0, 123.5, 100]], [0.9], [0])
    metrics = coco_metrics([r], NAMES)
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == 0.0
    assert metrics["mAP"] == pytest.approx(0.3)
    assert "AP/dog" not in metrics  # no dog in the ground truth


def test_wrong_class_and_a_false_positive_ranked_first_lower_precision():
    gt = [[0, 0, 100, 100]]
    wrong = coco_metrics([result(gt, [0], gt, [0.9], [1])], NAMES)
    assert wrong["mAP"] == 0.0
    # A higher-scored false positive halves the precision at full recall: AP = 0.5 (101 points).
    r = result(gt, [0], [[200, 200, 260, 260], [0, 0, 100, 100]], [0.95, 0.9], [0, 0])
    assert coco_metrics([r], NAMES)["AP50"] == pytest.approx(0.5, abs=0.01)


def test_a_difficult_object_neither_helps_nor_hurts():
    gt = [[0, 0, 100, 100], [200, 200, 300, 300]]
    found = result(gt, [0, 0], [[0, 0, 100, 100]], [0.9], [0], difficult=[False, True])
    assert coco_metrics([found], NAMES)["AP50"] == pytest.approx(1.0)
    both = result(gt, [0, 0], gt, [0.9, 0.8], [0, 0], difficult=[False, True])
    assert coco_metrics([both], NAMES)["AP50"] == pytest.approx(1.0)
