"""The small from-scratch CNN: shapes, parameter groups, its catalog registration, and a short real
training run on Fashion-MNIST through tlx's trainer that lowers the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import fmnist_small_cnn
from tlx.experiment import build_experiment
from tlx.models.small_cnn import SMALL_CNN_ENDPOINTS, SmallCNN, small_cnn_param_groups
from tlx.run_folder import read_metrics
from tlx.trainer import train
from tlx.transfer.groups import assign_groups
from tlx.tree import flatten
from tlx.zoo.registry import build_model

X = jnp.asarray(np.random.default_rng(0).standard_normal((2, 28, 28, 3)), jnp.float32)


def init(model, x=X):
    return jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_shapes_endpoints_and_groups_cover_every_parameter_once(batch_norm):
    model = SmallCNN(num_classes=10, batch_norm=batch_norm)
    variables = init(model)
    logits, state = model.apply(variables, X, mutable=["intermediates"])
    assert logits.shape == (2, 10)
    inter = state["intermediates"]
    assert set(inter) == set(SMALL_CNN_ENDPOINTS)
    assert inter["conv_1_relu"][0].shape == (2, 26, 26, 32)  # unpadded 3x3 convs
    assert inter["conv_2_pool"][0].shape == (2, 12, 12, 64)  # 24x24, max-pooled
    assert inter["dense_relu"][0].shape == (2, 128)

    params = flatten(variables["params"])
    assignment = assign_groups(list(params), small_cnn_param_groups())  # raises on a gap/overlap
    assert [name for name, _ in small_cnn_param_groups()] == ["conv_1", "conv_2", "dense", "head"]
    assert {p for p, g in assignment.items() if g == "dense"} == {"dense/kernel", "dense/bias"}
    assert params["dense/kernel"].shape == (12 * 12 * 64, 128)
    assert ("batch_stats" in variables) == batch_norm
    if batch_norm:
        assert assignment["conv_2_bn/scale"] == "conv_2"


def test_headless_pools_the_feature_map():
    model = SmallCNN(num_classes=None)
    variables = init(model)
    assert model.apply(variables, X).shape == (2, 64)
    paths = list(flatten(variables["params"]))
    assign_groups(paths, small_cnn_param_groups(include_top=False))
    assert SmallCNN(num_classes=None, pooling=None).apply(variables, X).shape == (2, 12, 12, 64)


def test_dropout_only_in_training():
    model = SmallCNN(num_classes=10)
    variables = init(model)
    eval_a = model.apply(variables, X, train=False)
    np.testing.assert_array_equal(eval_a, model.apply(variables, X))
    train_out = model.apply(variables, X, train=True, rngs={"dropout": jax.random.key(1)})
    assert float(jnp.max(jnp.abs(train_out - eval_a))) > 1e-4


def test_registered_as_an_image_architecture():
    cfg = {"name": "image_classifier", "arch": "small_cnn", "checkpoint": "", "image_size": 28}
    bundle = build_model(cfg, num_classes=10)
    assert isinstance(bundle.module, SmallCNN)
    assert bundle.group_names == ["conv_1", "conv_2", "dense", "head"]
    assert bundle.pretrained is None and bundle.preprocessing.image_size == 28
    variables = jax.jit(bundle.init)(jax.random.key(0))
    assert variables["params"]["head"]["kernel"].shape == (128, 10)


def test_short_real_run_lowers_the_loss(image_data_dir, tmp_path):
    """40 steps of the shipped config on 256 real Fashion-MNIST labels: the training loss falls
    well below its start (ln 10 = 2.30 at random init) and the model beats chance on validation."""
    config = fmnist_small_cnn.get_config()
    config.data.data_dir = image_data_dir
    config.data.train_examples = 256
    config.data.eval_examples = 500
    config.batch_size = 32
    config.total_steps = 40
    config.eval_every = 40
    config.checkpoint_every = 40
    config.log_every = 10
    config.optim.warmup_steps = 5
    config.data.eval_splits = ("validation",)
    summary = train(build_experiment(config), tmp_path, log=lambda *_: None, progress=False)
    losses = [r["loss"] for r in read_metrics(tmp_path) if r["split"] == "train"]
    assert len(losses) == 4
    assert losses[-1] < 0.7 * losses[0], losses
    assert summary["results"]["validation"]["accuracy"] > 0.5


def test_resize_size_feeds_the_whole_image():
    """model.image_size alone keeps torchvision's 256/224 ratio (28 -> resize 32, crop 28);
    model.resize_size = image_size resizes to the crop itself, so no border is cut away."""
    from tlx.zoo.registry import build_model

    model = {"name": "image_classifier", "arch": "small_cnn", "image_size": 28}
    cropped = build_model(model, num_classes=10).preprocessing
    whole = build_model({**model, "resize_size": 28}, num_classes=10).preprocessing
    assert (cropped.resize_size, cropped.image_size) == (32, 28)
    assert (whole.resize_size, whole.image_size) == (28, 28)
