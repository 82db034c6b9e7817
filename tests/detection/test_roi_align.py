"""RoIAlign (one level and FPN's multi-scale form) against torchvision.ops, on random features and
boxes that reach past the image, collapse to a line or cover it whole.

Tolerances: in float64 both implementations must agree to 1e-9 (the rules are the same; measured
2e-14). In float32 each is off the float64 value by ~1e-5: a sample coordinate of a few hundred
pixels carries a rounding error of ~3e-5 pixel, which moves a bilinear weight by as much, times a
feature gradient of O(1) (standard-normal features). 5e-5 absolute bounds that on any CPU; a wrong
rule (offset, clamp, level) moves outputs by O(0.1)."""

from collections import OrderedDict

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from tlx.detection import roi_align as roi_align_module  # noqa: E402
from tlx.detection.roi_align import box_levels, multiscale_roi_align, roi_align  # noqa: E402


def awkward_boxes(rng, n, height, width):
    """Boxes in image coordinates, including ones past every edge, degenerate and whole-image."""
    x0 = rng.uniform(-0.2 * width, width, n)
    y0 = rng.uniform(-0.2 * height, height, n)
    w, h = rng.uniform(0, width, n), rng.uniform(0, height, n)
    boxes = np.stack([x0, y0, x0 + w, y0 + h], 1)
    boxes[:3] = [[0, 0, width, height], [5, 5, 5, 9], [-30, -30, -2, -2]]
    return boxes.astype(np.float32)


@pytest.mark.parametrize("scale,aligned", [(1.0, False), (0.25, False), (0.125, True)])
def test_roi_align_matches_torchvision(scale, aligned):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1, 5, 13, 17)).astype(np.float32)  # NCHW, as torchvision
    boxes = awkward_boxes(rng, 40, 13 / scale, 17 / scale)
    for dtype, atol in [(np.float64, 1e-9), (np.float32, 5e-5)]:
        f, b = features.astype(dtype), boxes.astype(dtype)
        theirs = torchvision.ops.roi_align(
            torch.from_numpy(f), [torch.from_numpy(b)], (7, 6), scale, 2, aligned
        ).numpy()
        with jax.enable_x64(dtype == np.float64):
            ours = jax.jit(roi_align, static_argnums=(2, 3, 4, 5))(
                f[0].transpose(1, 2, 0), b, (7, 6), scale, 2, aligned
            )
            assert ours.dtype == dtype
            np.testing.assert_allclose(np.asarray(ours).transpose(0, 3, 1, 2), theirs, atol=atol)
    assert np.abs(theirs).max() > 0.1  # the boxes read real features, not only zeros


def test_multiscale_roi_align_matches_torchvision_and_picks_fpn_levels():
    rng = np.random.default_rng(1)
    image_size = (200, 296)  # unpadded; the levels are of the padded 224 x 320 batch
    shapes = [(56, 80), (28, 40), (14, 20), (7, 10)]
    names = ["0", "1", "2", "3"]
    levels = [rng.normal(size=(1, 4, h, w)).astype(np.float32) for h, w in shapes]
    sides = np.array([8, 40, 100, 150, 230, 400, 600])  # across every level's size range
    centres = rng.uniform(0, 200, (len(sides), 2))
    small_and_large = np.concatenate(
        [centres - sides[:, None] / 2, centres + sides[:, None] / 2], 1
    )
    boxes = np.concatenate([awkward_boxes(rng, 60, *image_size), small_and_large]).astype(
        np.float32
    )
    pooler = torchvision.ops.MultiScaleRoIAlign(names, 7, 2)
    for dtype, atol in [(np.float64, 1e-9), (np.float32, 5e-5)]:
        theirs = pooler(
            OrderedDict((n, torch.from_numpy(f.astype(dtype))) for n, f in zip(names, levels)),
            [torch.from_numpy(boxes.astype(dtype))],
            [image_size],
        ).numpy()
        with jax.enable_x64(dtype == np.float64):
            pyramid = [f[0].transpose(1, 2, 0).astype(dtype) for f in levels]
            ours = multiscale_roi_align(pyramid, boxes.astype(dtype), image_size)
            np.testing.assert_allclose(np.asarray(ours).transpose(0, 3, 1, 2), theirs, atol=atol)
    # Every level is used, by the rule torchvision's mapper applies.
    mapper = pooler.map_levels
    expected = mapper([torch.from_numpy(boxes)]).numpy()
    np.testing.assert_array_equal(box_levels(boxes, 2, 5), expected)
    assert set(expected[-len(sides) :].tolist()) == {0, 1, 2, 3}


def torch_feature_gradient(pooler, levels, boxes, cotangent):
    """d sum(pooler(levels, boxes) * cotangent) / d levels by torch's autograd, NHWC."""
    inputs = [torch.from_numpy(f[None].transpose(0, 3, 1, 2)).requires_grad_() for f in levels]
    out = pooler(inputs, torch.from_numpy(boxes))
    (out * torch.from_numpy(cotangent.transpose(0, 3, 1, 2))).sum().backward()
    return [x.grad.numpy()[0].transpose(1, 2, 0) for x in inputs]


@pytest.mark.parametrize("dense_limit", [10_000, 0])  # the matrix product; the scatter-add
def test_the_feature_gradient_matches_torchvision_autograd(dense_limit, monkeypatch):
    """Both ways of the custom gradient against torch's own backward of roi_align and
    MultiScaleRoIAlign. float64, so that the sums' order (a matrix product against torch's
    atomic adds) leaves ~1e-15; a wrong weight or a bin read from the wrong level is O(0.1)."""
    monkeypatch.setattr(roi_align_module, "DENSE_GRADIENT_PIXELS", dense_limit)
    rng = np.random.default_rng(2)
    image_size = (100, 148)
    levels = [rng.normal(size=(h, w, 3)) for h, w in [(28, 40), (14, 20), (7, 10)]]
    sides = np.array([10, 60, 120, 250, 400])
    centres = rng.uniform(0, 100, (len(sides), 2))
    boxes = np.concatenate(
        [
            awkward_boxes(rng, 30, *image_size).astype(np.float64),
            np.concatenate([centres - sides[:, None] / 2, centres + sides[:, None] / 2], 1),
        ]
    )
    cotangent = rng.normal(size=(len(boxes), 7, 7, 3))
    names = ["0", "1", "2"]
    pooler = torchvision.ops.MultiScaleRoIAlign(names, 7, 2)
    theirs = torch_feature_gradient(
        lambda xs, b: pooler(dict(zip(names, xs)), [b], [image_size]), levels, boxes, cotangent
    )
    single = torch_feature_gradient(
        lambda xs, b: torchvision.ops.roi_align(xs[0], [b], 7, 0.25, 2, True),
        levels[:1],
        boxes,
        cotangent,
    )
    with jax.enable_x64(True):
        loss = lambda fs: (multiscale_roi_align(fs, boxes, image_size) * cotangent).sum()  # noqa: E731
        ours = jax.grad(loss)(tuple(levels))
        one = lambda f: (roi_align(f, boxes, 7, 0.25, 2, True) * cotangent).sum()  # noqa: E731
        ours_single = jax.grad(one)(levels[0])
        np.testing.assert_allclose(ours_single, single[0], atol=1e-9)
        for mine, torch_grad in zip(ours, theirs):
            assert np.abs(torch_grad).max() > 0.1  # every level receives boxes
            np.testing.assert_allclose(mine, torch_grad, atol=1e-9)
        # The boxes get no gradient, as in torchvision (Faster R-CNN detaches its proposals).
        by_box = jax.grad(lambda b: (roi_align(levels[0], b, 7) * cotangent).sum())(boxes)
        assert not np.any(by_box)


def test_adaptive_sampling_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="fixed sampling_ratio > 0.*Faster R-CNN uses 2"):
        roi_align(np.zeros((4, 4, 1), np.float32), np.zeros((1, 4), np.float32), 2, 1.0, -1)
