"""YOLOv3 targets and loss: assignment by hand, padding-invariance under jit, a perfect prediction
costs ~nothing, and a small detector learns to find a square."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.models.darknet_cfgs import conv
from tlx.detection.boxes import box_iou
from tlx.detection.yolo import detect
from tlx.detection.yolo_loss import assign_targets, yolo_loss, yolo_loss_one_image
from tlx.models.darknet import Darknet
from tlx.models.darknet_cfg import parse_cfg

# 64 px in, three conv + max-pool stages (8x8 cells), one head of 3 anchors x (5 + 2 classes).
TINY = (
    "[net]\nwidth=64\nheight=64\nchannels=3\n"
    + "".join(conv(f) + "[maxpool]\nsize=2\nstride=2\n" for f in (16, 32, 32))
    + conv(21, size=1, activation="linear", bn=False)
    + "[yolo]\nmask=0,1,2\nanchors=10,10, 20,20, 30,30\nclasses=2\nnum=3\n"
)


def logit(p):
    return np.log(p / (1 - p))


def test_a_box_goes_to_its_best_anchor_in_the_cell_holding_its_centre():
    spec = parse_cfg("yolov3-tiny")  # anchors 10,14 23,27 37,58 | 81,82 135,169 344,319
    box = jnp.asarray([[100 - 40.5, 200 - 41, 100 + 40.5, 200 + 41]])  # 81 x 82 at (100, 200)
    coarse, fine = assign_targets(box, jnp.asarray([5]), jnp.asarray([True]), spec)
    # Anchor (81, 82) is the first of the coarse layer (mask 3,4,5), 13x13 cells of 32 pixels.
    assert coarse.positive.shape == (13, 13, 3) and int(coarse.positive.sum()) == 1
    assert bool(coarse.positive[6, 3, 0])  # row 200 // 32, column 100 // 32
    np.testing.assert_allclose(coarse.offsets[6, 3, 0], [100 / 32 - 3, 200 / 32 - 6], atol=1e-6)
    np.testing.assert_allclose(coarse.log_sizes[6, 3, 0], [0, 0], atol=1e-6)
    assert int(jnp.argmax(coarse.classes[6, 3, 0])) == 5
    np.testing.assert_allclose(coarse.box_scale[6, 3, 0], 2 - 81 * 82 / 416**2, rtol=1e-6)
    assert not bool(fine.positive.any())
    # A small box goes to the fine layer instead.
    small = jnp.asarray([[10.0, 10.0, 33.0, 37.0]])  # 23 x 27 at (21.5, 23.5): fine anchor 1
    coarse, fine = assign_targets(small, jnp.asarray([0]), jnp.asarray([True]), spec)
    assert not bool(coarse.positive.any()) and bool(fine.positive[1, 1, 1])  # 16-pixel cells


def test_padding_does_not_change_the_loss_under_jit():
    spec = parse_cfg(TINY)
    rng = np.random.default_rng(0)
    raws = (jnp.asarray(rng.normal(0, 1, (2, 8, 8, 21)), jnp.float32),)
    boxes = jnp.asarray([[[5, 5, 25, 30], [30, 30, 60, 50]]] * 2, jnp.float32)
    classes = jnp.asarray([[0, 1]] * 2)
    mask = jnp.asarray([[True, True], [True, False]])
    loss = jax.jit(lambda *a: yolo_loss(*a, spec))
    base = loss(raws, boxes, classes, mask)
    junk = jnp.asarray([[[0, 0, 64, 64]] * 3] * 2, jnp.float32)  # padded rows, never counted
    padded = loss(
        raws,
        jnp.concatenate([boxes, junk], 1),
        jnp.concatenate([classes, jnp.ones((2, 3), int)], 1),
        jnp.concatenate([mask, jnp.zeros((2, 3), bool)], 1),
    )
    for key in ("loss", "box", "objectness", "class"):
        np.testing.assert_allclose(padded[key], base[key], rtol=1e-6)
    assert float(base["loss"][0]) != pytest.approx(float(base["loss"][1]))  # mask is per image


def test_a_perfect_prediction_costs_almost_nothing_and_any_error_costs_more():
    spec = parse_cfg(TINY)
    box, cls, mask = jnp.asarray([[12.0, 20.0, 32.0, 41.0]]), jnp.asarray([1]), jnp.asarray([True])
    (target,) = assign_targets(box, cls, mask, spec)
    t = np.full((8, 8, 3, 7), -16.0, np.float32)  # objectness and classes ~0 everywhere
    where = np.asarray(target.positive)
    t[..., :2][where] = logit(np.asarray(target.offsets)[where])
    t[..., 2:4][where] = np.asarray(target.log_sizes)[where]
    t[..., 4][where] = 16.0
    t[..., 5:][where] = np.where(np.asarray(target.classes)[where] > 0, 16.0, -16.0)
    perfect = yolo_loss_one_image((jnp.asarray(t.reshape(8, 8, 21)),), box, cls, mask, spec)
    # 192 cells x BCE(logit -16, 0) = 192 x 1.1e-7; the box error is float32 rounding.
    assert float(perfect["loss"]) < 1e-4 and float(perfect["box"]) < 1e-8
    for channel in (0, 2, 4, 6):  # a wrong centre, size, objectness or class
        worse = t.copy()
        worse[..., channel][where] -= 20.0
        hurt = yolo_loss_one_image((jnp.asarray(worse.reshape(8, 8, 21)),), box, cls, mask, spec)
        assert float(hurt["loss"]) > float(perfect["loss"]) + 0.1, channel


def test_a_small_detector_learns_to_find_a_square():
    spec = parse_cfg(TINY)
    model = Darknet(cfg=TINY)
    image = np.zeros((1, 64, 64, 3), np.float32)
    image[0, 20:44, 12:36] = 1.0  # a 24 x 24 white square, class 1
    boxes = jnp.asarray([[[12.0, 20.0, 36.0, 44.0]]])
    classes, mask = jnp.asarray([[1]]), jnp.asarray([[True]])
    variables = model.init(jax.random.key(0), jnp.asarray(image))
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, state, opt_state):
        def loss_fn(params):
            raws, updates = model.apply(
                {"params": params, **state}, jnp.asarray(image), train=True, mutable=["batch_stats"]
            )
            return yolo_loss(raws, boxes, classes, mask, spec)["loss"].mean(), updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        changes, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, changes), updates, opt_state, loss

    losses = []
    for _ in range(150):
        params, state, opt_state, loss = step(params, state, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])
    raws = model.apply({"params": params, **state}, jnp.asarray(image))
    found = detect(raws, spec, (64, 64), score_threshold=0.5)
    assert int(found["valid"][0].sum()) >= 1 and int(found["classes"][0, 0]) == 1
    assert float(box_iou(found["boxes"][0, :1], boxes[0])[0, 0]) > 0.7
