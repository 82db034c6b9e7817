"""Faster R-CNN's training path: jit-compiled losses and gradients with static shapes, padded
ground truth that changes nothing, and a few SGD steps that fit one batch (a small ResNet-18
detector on 128 x 128 canvases, so the test runs in seconds)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tlx.detection.faster_rcnn import FasterRCNN, init_faster_rcnn
from tlx.models.resnet import ResNet

SIZE = 128


def small_detector():
    return FasterRCNN(
        backbone=ResNet(depth=18, num_classes=None, pooling=None),
        endpoints=("layer1", "layer2", "layer3", "layer4"),
        num_classes=3,
        fpn_channels=32,
        box_hidden=64,
    )


def batch():
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    images[0, 20:70, 30:90] += 2.0  # something to find where the boxes are
    images[1, 60:120, 10:50] -= 2.0
    sizes = np.float32([[SIZE, SIZE], [SIZE, 100]])
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0, :2] = [[30, 20, 90, 70], [5, 80, 40, 120]]
    boxes[1, 0] = [10, 60, 50, 120]
    classes = np.int32([[1, 2, 0], [2, 0, 0]])
    mask = np.array([[True, True, False], [True, False, False]])
    return images, sizes, {"boxes": boxes, "classes": classes, "mask": mask}


def loss_fn(model):
    def losses(params, state, images, sizes, targets, key):
        out = model.apply(
            {"params": params, **state},
            images,
            sizes,
            train=False,
            targets=targets,
            rngs={"sampling": key},
            mutable=["intermediates"],
        )[0]
        return jnp.mean(out["loss"]), out

    return losses


def test_padded_ground_truth_changes_no_loss():
    model = small_detector()
    images, sizes, targets = batch()
    variables = init_faster_rcnn(model, jax.random.key(0), images, sizes)
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    losses = jax.jit(loss_fn(model))
    key = jax.random.key(3)
    _, base = losses(params, state, images, sizes, targets, key)
    padded = {k: v.copy() for k, v in targets.items()}
    padded["boxes"][:, 2] = [0, 0, SIZE, SIZE]  # a whole-image box, but masked out
    padded["classes"][:, 2] = 1
    _, again = losses(params, state, images, sizes, padded, key)
    for name in ("rpn_objectness", "rpn_box", "roi_classifier", "roi_box"):
        assert base[name].shape == (2,)
        assert np.all(np.isfinite(base[name])), name
        np.testing.assert_allclose(again[name], base[name], rtol=1e-6, err_msg=name)
    unmasked = {**padded, "mask": np.ones((2, 3), bool)}
    _, changed = losses(params, state, images, sizes, unmasked, key)
    assert not np.allclose(changed["rpn_box"], base["rpn_box"])  # the mask is what kept it out


def test_sgd_steps_fit_one_batch():
    model = small_detector()
    images, sizes, targets = batch()
    variables = init_faster_rcnn(model, jax.random.key(0), images, sizes)
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.sgd(0.01, momentum=0.9))
    opt_state = optimizer.init(params)
    grad = jax.value_and_grad(loss_fn(model), has_aux=True)

    @jax.jit
    def step(params, opt_state, key):
        (loss, out), grads = grad(params, state, images, sizes, targets, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    history = []
    for i in range(30):
        params, opt_state, loss = step(params, opt_state, jax.random.key(i))
        history.append(float(loss))
    assert np.all(np.isfinite(history))
    assert np.mean(history[-5:]) < 0.6 * np.mean(history[:5]), history
