"""tlx.detection's box ops and NMS against torchvision.ops, on random boxes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models.detection._utils import BoxCoder  # noqa: E402

from tlx.detection.boxes import (  # noqa: E402
    box_iou,
    cxcywh_to_xyxy,
    decode_boxes,
    encode_boxes,
    generalized_box_iou,
    xyxy_to_cxcywh,
)
from tlx.detection.nms import batched_nms, nms  # noqa: E402


def random_boxes(rng, n, size=100.0, max_side=40.0):
    """xyxy boxes inside a size x size image; a few empty ones (zero width) included."""
    top_left = rng.uniform(0, size - max_side, (n, 2))
    sides = rng.uniform(1, max_side, (n, 2))
    sides[rng.random(n) < 0.05, 0] = 0.0
    return np.concatenate([top_left, top_left + sides], 1).astype(np.float32)


def test_iou_and_giou_match_torchvision():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 37), random_boxes(rng, 23)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(box_iou(a, b), torchvision.ops.box_iou(ta, tb), atol=1e-6)
    giou = torchvision.ops.generalized_box_iou(ta, tb)
    np.testing.assert_allclose(generalized_box_iou(a, b), giou, atol=1e-6)
    # Batched over a leading axis, as the loss uses them.
    batched = box_iou(np.stack([a, a]), np.stack([b, b]))
    np.testing.assert_allclose(batched[1], box_iou(a, b))


def test_box_coder_matches_torchvision():
    rng = np.random.default_rng(1)
    anchors, boxes = random_boxes(rng, 50), random_boxes(rng, 50)
    anchors[:, 2:] += 1  # no empty anchors: the coder divides by their sides
    boxes[:, 2:] += 1
    weights = (10.0, 10.0, 5.0, 5.0)
    coder = BoxCoder(weights)
    ta, tb = torch.from_numpy(anchors), torch.from_numpy(boxes)
    theirs = coder.encode_single(tb, ta).numpy()
    ours = encode_boxes(boxes, anchors, weights)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    deltas = rng.normal(0, 2, (50, 4)).astype(np.float32)  # some beyond the clamp
    theirs = coder.decode_single(torch.from_numpy(deltas), ta).numpy()
    np.testing.assert_allclose(decode_boxes(deltas, anchors, weights), theirs, rtol=1e-5, atol=1e-3)
    round_trip = decode_boxes(encode_boxes(boxes, anchors, weights), anchors, weights)
    np.testing.assert_allclose(round_trip, boxes, atol=1e-3)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes, atol=1e-4)


PADDED = 400  # every case padded to one size: one compilation, and the validity mask exercised
jit_nms = jax.jit(nms, static_argnums=(2, 3))
jit_batched_nms = jax.jit(batched_nms, static_argnums=(3, 4))


def padded(rng, n):
    boxes = random_boxes(rng, PADDED, size=200.0, max_side=80.0)
    scores = rng.random(PADDED).astype(np.float32)
    valid = np.arange(PADDED) < n
    scores[~valid] = 2.0  # padding outranks every real box: the mask alone must drop it
    return boxes, scores, valid


@pytest.mark.parametrize("case", range(20))
def test_nms_keeps_exactly_torchvisions_indices(case):
    rng = np.random.default_rng(100 + case)
    n = int(rng.integers(5, PADDED))
    boxes, scores, valid = padded(rng, n)
    threshold = float(rng.choice([0.3, 0.5, 0.7]))
    theirs = torchvision.ops.nms(
        torch.from_numpy(boxes[:n]), torch.from_numpy(scores[:n]), threshold
    )
    keep, mask = jit_nms(boxes, scores, threshold, PADDED, valid)
    np.testing.assert_array_equal(np.asarray(keep)[np.asarray(mask)], theirs.numpy())
    assert not np.asarray(mask)[len(theirs) :].any()


@pytest.mark.parametrize("case", range(10))
def test_class_aware_nms_matches_torchvisions_batched_nms(case):
    rng = np.random.default_rng(200 + case)
    boxes, scores, _ = padded(rng, PADDED)
    classes = rng.integers(0, 4, PADDED)
    valid = rng.random(PADDED) > 0.2  # padded / below-threshold candidates never come back
    theirs = torchvision.ops.batched_nms(
        torch.from_numpy(boxes[valid]),
        torch.from_numpy(scores[valid]),
        torch.from_numpy(classes[valid]),
        0.5,
    )
    keep, mask = jit_batched_nms(boxes, scores, jnp.asarray(classes), 0.5, 64, jnp.asarray(valid))
    kept = np.flatnonzero(valid)[theirs.numpy()][:64]
    np.testing.assert_array_equal(np.asarray(keep)[np.asarray(mask)], kept)


def test_nms_with_fewer_slots_than_survivors_keeps_the_best():
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 100, size=1000.0, max_side=10.0)  # sparse: most survive
    scores = rng.random(100).astype(np.float32)
    keep, mask = nms(boxes, scores, 0.5, 10)
    assert np.asarray(mask).all()
    theirs = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5)[:10]
    np.testing.assert_array_equal(np.asarray(keep), theirs.numpy())
