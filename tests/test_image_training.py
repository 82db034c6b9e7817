"""Image classifiers end to end: catalog weights -> image_classifier bundle -> trainer -> predict,
on real Fashion-MNIST and the packaged ImageNet MobileNetV2; and the BatchNorm modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import fmnist_small_cnn_bn, mnv2_fmnist_finetune
from tests.test_trainer import Killed, kill_at
from tlx.checkpoint import Checkpoints
from tlx.experiment import build_experiment
from tlx.trainer import train
from tlx.tree import flatten
from tlx.zoo.registry import build_model

pytest.importorskip("torch")  # reading the .pth


def small(config, data_dir, **overrides):
    config.data.data_dir = data_dir
    config.model.image_size = 32
    config.data.train_examples = 64
    config.data.eval_examples = 96
    config.data.eval_batch_size = 48
    config.batch_size = 8
    config.total_steps = 4
    config.eval_every = 4
    config.checkpoint_every = 2
    config.log_every = 2
    config.optim.warmup_steps = 1
    for key, value in overrides.items():
        config[key] = value
    return config


# (arch, kwargs, input size), at the smallest size each takes. GoogLeNet's own tests run its
# train mode through the same interceptor; VGG-BN shares the mechanism (call-time flag).
BN_ARCHS = [
    ("mobilenet_v2", {"dropout": 0.0}, 32),
    ("resnet", {"depth": 18}, 32),  # no dropout in torchvision's ResNet
    ("inception_v3", {"dropout": 0.0}, 75),
]


@pytest.mark.parametrize("arch,kwargs,size", BN_ARCHS, ids=[a for a, _, _ in BN_ARCHS])
def test_batchnorm_modes(arch, kwargs, size):
    """frozen: training mode normalises with the running statistics and leaves them untouched
    (so with dropout off it equals evaluation); train: batch statistics, running ones updated."""
    outs = {}
    x = jax.random.normal(jax.random.key(1), (4, size, size, 3)) * 2.0 + 0.5
    for mode in ("frozen", "train"):
        cfg = {"name": "image_classifier", "arch": arch, "checkpoint": "", "batchnorm": mode}
        cfg["kwargs"] = kwargs
        cfg["image_size"] = size
        bundle = build_model(cfg, num_classes=5)
        variables = jax.jit(bundle.init)(jax.random.key(0))  # jit: one compilation, not per op
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        forward = jax.jit(bundle.forward, static_argnums=4)
        train_out, new_state = forward(params, state, {"image": x}, jax.random.key(2), True)
        eval_out, _ = forward(params, state, {"image": x}, None, False)
        same_state = jax.tree_util.tree_all(
            jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), state, new_state)
        )
        outs[mode] = (train_out, eval_out, same_state)
    train_out, eval_out, same_state = outs["frozen"]
    np.testing.assert_allclose(train_out, eval_out, rtol=1e-5, atol=1e-5)
    assert same_state
    train_out, eval_out, same_state = outs["train"]
    assert not same_state
    assert float(jnp.max(jnp.abs(train_out - eval_out))) > 1e-3


def test_pretrained_bundle_drops_the_imagenet_head_and_keeps_statistics():
    cfg = {"name": "image_classifier", "checkpoint": "torchvision:mobilenet_v2", "image_size": 64}
    bundle = build_model(cfg, num_classes=10)
    assert not any(k.startswith("classifier/") for k in bundle.pretrained)
    assert "features_0/conv/kernel" in bundle.pretrained
    stats = bundle.pretrained_state["batch_stats"]
    assert "features_0/bn/mean" in stats and float(np.abs(stats["features_0/bn/mean"]).sum()) > 0
    assert bundle.preprocessing.image_size == 64
    assert bundle.preprocessing.mean == (0.485, 0.456, 0.406)
    assert bundle.group_names[-1] == "head"
    with pytest.raises(ValueError, match="keras"):
        build_model({**cfg, "checkpoint": "keras:vgg16", "arch": "resnet"}, num_classes=10)


def test_transfer_run_trains_predicts_and_keeps_frozen_groups(image_data_dir, tmp_path):
    config = small(mnv2_fmnist_finetune.get_config(), image_data_dir)
    config.plan.name = "freeze_to"
    config.plan.k = 2  # head + last_conv
    exp = build_experiment(config)
    summary = train(exp, tmp_path, log=lambda *_: None, progress=False)
    assert summary["results"]["test"]["examples"] == 96
    assert summary["train_examples"] == 64  # data.train_examples
    assert 0.0 <= summary["input_wait_fraction"] < 1.0
    final = flatten(Checkpoints(tmp_path / "checkpoints").restore_params())
    pretrained = exp.model.pretrained
    # frozen groups are bit-identical to ImageNet's; the trained ones moved
    np.testing.assert_array_equal(
        final["features_5/expand/conv/kernel"], pretrained["features_5/expand/conv/kernel"]
    )
    assert not np.array_equal(
        final["features_18/conv/kernel"], pretrained["features_18/conv/kernel"]
    )

    from PIL import Image

    from tlx.predict import load_run, predict_images, read_images

    img = np.asarray(exp.eval_batches["test"][0]["image"][0])  # any image works; shape matters
    path = tmp_path / "item.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(path)
    experiment, params, model_state = load_run(tmp_path)
    probs = predict_images(experiment, params, model_state, read_images([str(path)]))
    assert probs.shape == (1, 10) and abs(float(probs.sum()) - 1.0) < 1e-4
    assert img.shape == (32, 32, 3)


def test_scratch_run_resumes_batchnorm_statistics_exactly(image_data_dir, tmp_path):
    """A from-scratch run learning BatchNorm statistics, killed and resumed, ends with the unbroken
    run's parameters and statistics bit for bit. The small CNN with BatchNorm (the adaptation
    study's source model) shows it at a tenth of MobileNetV2's compile time; MobileNetV2's scratch
    config trains end to end in tests/export/test_torchvision_export.py."""
    config = small(fmnist_small_cnn_bn.get_config(), image_data_dir)
    config.model.image_size = 28
    straight = train(build_experiment(config), tmp_path / "a", log=lambda *_: None, progress=False)
    assert straight["steps"] == 4

    exp = build_experiment(config)
    exp.train_batches = kill_at(exp.train_batches, at=3)
    with pytest.raises(Killed):
        train(exp, tmp_path / "b", log=lambda *_: None, progress=False)
    assert Checkpoints(tmp_path / "b/checkpoints").latest_step() == 2
    train(build_experiment(config), tmp_path / "b", log=lambda *_: None, progress=False)

    a, b = Checkpoints(tmp_path / "a/checkpoints"), Checkpoints(tmp_path / "b/checkpoints")
    params_a, params_b = flatten(a.restore_params()), flatten(b.restore_params())
    assert params_a.keys() == params_b.keys()
    for key, value in params_a.items():
        np.testing.assert_array_equal(value, params_b[key], err_msg=key)
    exp = build_experiment(config, with_data=False)
    like = {"batch_stats": exp.model.init(jax.random.key(0))["batch_stats"]}
    stats_a = flatten(a.restore_model_state(like)["batch_stats"])
    stats_b = flatten(b.restore_model_state(like)["batch_stats"])
    init_stats = flatten(like["batch_stats"])
    assert not np.array_equal(stats_a["conv_1_bn/mean"], init_stats["conv_1_bn/mean"])
    for key in stats_a:
        np.testing.assert_array_equal(stats_a[key], stats_b[key], err_msg=key)


def test_frozen_groups_follow_their_own_batchnorm_policy():
    """A stage training only last_conv and head: BatchNorm in the frozen stem keeps its running
    statistics under frozen_batchnorm="frozen" and re-estimates them under "train", while the
    trainable last_conv follows model.batchnorm."""
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3)) * 2.0 + 0.5
    changed = {}
    for policy in ("frozen", "train"):
        cfg = {
            "name": "image_classifier",
            "arch": "mobilenet_v2",
            "checkpoint": "",
            "image_size": 32,
        }
        cfg.update(batchnorm="train", frozen_batchnorm=policy, kwargs={"dropout": 0.0})
        bundle = build_model(cfg, num_classes=5)
        variables = jax.jit(bundle.init)(jax.random.key(0))
        state = {"batch_stats": variables["batch_stats"]}
        forward = jax.jit(bundle.forward_for_stage(["last_conv", "head"]), static_argnums=4)
        _, new_state = forward(variables["params"], state, {"image": x}, jax.random.key(2), True)
        old, new = flatten(state["batch_stats"]), flatten(new_state["batch_stats"])
        changed[policy] = {k for k in old if not np.array_equal(old[k], new[k])}
    assert "features_18/bn/mean" in changed["frozen"]  # trainable group, batchnorm="train"
    assert not any(k.startswith("features_0/") for k in changed["frozen"])
    assert "features_0/bn/mean" in changed["train"]
    with pytest.raises(ValueError, match="frozen_batchnorm"):
        build_model({**cfg, "frozen_batchnorm": "adabn"}, num_classes=5)
