"""Faster R-CNN's second stage against torchvision's RoIHeads on fixed proposals: pooled features,
class logits and box deltas, then the detections (boxes, scores, classes, in order).

Tolerances: logits and deltas come from a 196-wide pooled input through two 64-wide layers of
O(0.1) weights, O(1) outputs; float32 summation order moves them by ~1e-6, so 1e-4 absolute
holds on any CPU. Detected boxes reach 300 px (float32 spacing 3e-5) after decoding with
exponentiated deltas: compared to 1e-3 px."""

from collections import OrderedDict

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead  # noqa: E402
from torchvision.models.detection.roi_heads import RoIHeads  # noqa: E402

from tlx.detection.roi_align import multiscale_roi_align  # noqa: E402
from tlx.detection.roi_heads import BoxHead, DetectionSettings, detect_boxes  # noqa: E402

CHANNELS, HIDDEN, CLASSES = 4, 64, 5


def dense(module, weight=None):
    w = module.weight.detach().numpy() if weight is None else weight
    return {"kernel": w.T, "bias": module.bias.detach().numpy()}


def torch_roi_heads(settings):
    torch.manual_seed(0)
    head, predictor = TwoMLPHead(CHANNELS * 49, HIDDEN), FastRCNNPredictor(HIDDEN, CLASSES)
    for p in [*head.parameters(), *predictor.parameters()]:
        torch.nn.init.normal_(p, std=0.1)
    pooler = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    heads = RoIHeads(
        pooler,
        head,
        predictor,
        0.5,
        0.5,
        512,
        0.25,
        None,
        settings.score_threshold,
        settings.nms_threshold,
        settings.detections_per_image,
    ).eval()
    # fc6 reads (C, 7, 7) in torch, (7, 7, C) here: permute its input axis.
    fc6 = head.fc6.weight.detach().numpy().reshape(HIDDEN, CHANNELS, 7, 7)
    fc6 = fc6.transpose(0, 2, 3, 1).reshape(HIDDEN, -1)
    params = {
        "fc6": dense(head.fc6, fc6),
        "fc7": dense(head.fc7),
        "cls_score": dense(predictor.cls_score),
        "bbox_pred": dense(predictor.bbox_pred),
    }
    return heads, {"params": params}


@pytest.mark.parametrize("candidates", [2000, 400])  # all candidates; a cap NMS fills anyway
def test_roi_heads_match_torchvision_on_fixed_proposals(candidates):
    settings = DetectionSettings(candidates=candidates)
    rng = np.random.default_rng(0)
    image_size = (200, 296)
    shapes = [(56, 80), (28, 40), (14, 20), (7, 10)]
    levels = [rng.normal(size=(1, CHANNELS, h, w)).astype(np.float32) for h, w in shapes]
    corners = rng.uniform(0, 180, (300, 2))
    sides = rng.uniform(4, 200, (300, 2))
    proposals = np.concatenate([corners, corners + sides], 1).astype(np.float32)
    heads, variables = torch_roi_heads(settings)
    named = OrderedDict((str(i), torch.from_numpy(f)) for i, f in enumerate(levels))
    with torch.no_grad():
        theirs, _ = heads(named, [torch.from_numpy(proposals)], [image_size])
        pooled = heads.box_roi_pool(named, [torch.from_numpy(proposals)], [image_size])
        their_logits, their_deltas = heads.box_predictor(heads.box_head(pooled))
    theirs = {k: v.numpy() for k, v in theirs[0].items()}

    pyramid = [f[0].transpose(1, 2, 0) for f in levels]
    ours_pooled = multiscale_roi_align(pyramid, proposals, image_size)
    logits, deltas = BoxHead(CLASSES, HIDDEN).apply(variables, ours_pooled)
    np.testing.assert_allclose(logits, their_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(deltas.reshape(300, -1), their_deltas.numpy(), atol=1e-4)

    found = jax.jit(
        lambda lo, de: detect_boxes(
            lo, de, proposals, np.ones(300, bool), np.float32(image_size), settings
        )
    )(logits, deltas)
    n = int(found["valid"].sum())
    assert n == len(theirs["scores"]) == settings.detections_per_image
    np.testing.assert_array_equal(found["classes"][:n], theirs["labels"])
    np.testing.assert_allclose(found["scores"][:n], theirs["scores"], atol=1e-5)
    np.testing.assert_allclose(found["boxes"][:n], theirs["boxes"], atol=1e-3)


def test_padded_proposals_never_become_detections():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(50, CLASSES)).astype(np.float32) * 3
    deltas = np.zeros((50, CLASSES, 4), np.float32)
    proposals = np.tile(np.float32([[10, 10, 60, 60]]), (50, 1))
    proposals[25:] = [[100, 100, 150, 150]]
    mask = np.arange(50) < 25  # the second half is padding
    found = detect_boxes(logits, deltas, proposals, mask, np.float32([200, 200]))
    boxes = np.asarray(found["boxes"])[np.asarray(found["valid"])]
    assert len(boxes) > 0 and np.all(boxes[:, 0] < 100)  # only the real proposals' boxes
