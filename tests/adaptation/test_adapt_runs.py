"""Adaptation runs end to end on real Fashion-MNIST and a corrupted copy: source-only, AdaBN and
TENT change exactly what they declare, resume exactly, and bad targets fail before compute."""

import jax
import numpy as np
import pytest

from configs import adapt_fmnist_c, fmnist_small_cnn_bn
from tests.adaptation.tiny_runs import QUIET, tiny
from tests.test_trainer import Killed, kill_at
from tlx.adaptation.statistics import reestimate_batchnorm
from tlx.checkpoint import Checkpoints
from tlx.errors import ConfigError
from tlx.experiment import build_experiment
from tlx.trainer import train
from tlx.tree import flatten

pytest.importorskip("corrupt_tta")
pytest.importorskip("skimage")
TARGET = "fashion_mnist_c/gaussian_noise/5"


@pytest.fixture(scope="module")
def source_run(image_data_dir, tmp_path_factory):
    config = tiny(fmnist_small_cnn_bn.get_config(), image_data_dir)
    config.total_steps = 4
    workdir = tmp_path_factory.mktemp("adapt") / "source"
    train(build_experiment(config), workdir, **QUIET)
    return workdir


def adapt_config(source_run, data_dir, method, **adapt):
    config = tiny(adapt_fmnist_c.get_config(), data_dir)
    config.init_from = str(source_run)
    config.adapt.method = method
    config.adapt.target = TARGET
    config.adapt.statistics_batch_size = 1000
    config.adapt.target_batch_size = 16
    for key, value in adapt.items():
        config.adapt[key] = value
    if method == "tent":
        config.total_steps = 4
        config.model.frozen_batchnorm = "tent"
    return config


def restored(workdir):
    checkpoints = Checkpoints(workdir / "checkpoints")
    exp_like = build_experiment(fmnist_small_cnn_bn.get_config(), with_data=False)
    like = {"batch_stats": exp_like.model.init(jax.random.key(0))["batch_stats"]}
    params = flatten(checkpoints.restore_params())
    return params, flatten(checkpoints.restore_model_state(like)["batch_stats"])


def test_source_only_scores_the_source_model_on_the_target(source_run, image_data_dir, tmp_path):
    summary = train(
        build_experiment(adapt_config(source_run, image_data_dir, "none")), tmp_path, **QUIET
    )
    assert summary["steps"] == 0 and summary["results"]["target_test"]["examples"] == 5000
    params, stats = restored(tmp_path)
    source_params, source_stats = restored(source_run)
    for key, value in {**params, **stats}.items():
        np.testing.assert_array_equal(value, {**source_params, **source_stats}[key], err_msg=key)


def test_adabn_changes_statistics_alone_to_the_targets(source_run, image_data_dir, tmp_path):
    config = adapt_config(source_run, image_data_dir, "adabn")
    exp = build_experiment(config)
    train(exp, tmp_path, **QUIET)
    params, stats = restored(tmp_path)
    source_params, source_stats = restored(source_run)
    for key, value in params.items():  # no parameter moves
        np.testing.assert_array_equal(value, source_params[key], err_msg=key)
    assert not np.allclose(stats["conv_1_bn/mean"], source_stats["conv_1_bn/mean"])
    # the statistics are the pass over the target's unlabelled train split (4,000 images in one
    # batch of 1,000 x 4): recomputed here from the source's checkpoint, the same numbers
    state = {"batch_stats": jax.tree_util.tree_map(np.asarray, _nested(source_stats))}
    expected = flatten(
        reestimate_batchnorm(
            exp.model.module, _nested(source_params), state, exp.target.statistics_batches
        )["batch_stats"]
    )
    assert len(exp.target.statistics_batches) == 4
    for key, value in expected.items():
        np.testing.assert_allclose(stats[key], value, rtol=1e-6, atol=1e-6, err_msg=key)


def _nested(flat):
    from tlx.tree import unflatten

    return unflatten(dict(flat))


def test_tent_trains_batchnorm_affine_alone_and_resumes_exactly(
    source_run, image_data_dir, tmp_path
):
    config = adapt_config(source_run, image_data_dir, "tent")
    summary = train(build_experiment(config), tmp_path / "a", **QUIET)
    assert summary["results"]["target_test"]["examples"] == 5000
    params, _ = restored(tmp_path / "a")
    source_params, _ = restored(source_run)
    moved = {k for k in params if not np.array_equal(params[k], source_params[k])}
    assert moved == {"conv_1_bn/scale", "conv_1_bn/bias", "conv_2_bn/scale", "conv_2_bn/bias"}

    exp = build_experiment(config)
    assert "label" not in exp.train_batches[0]  # the target stream carries no label
    exp.train_batches = kill_at(exp.train_batches, at=3)
    with pytest.raises(Killed):
        train(exp, tmp_path / "b", **QUIET)
    train(build_experiment(config), tmp_path / "b", **QUIET)
    params_b, stats_b = restored(tmp_path / "b")
    _, stats_a = restored(tmp_path / "a")
    for key, value in {**params, **stats_a}.items():
        np.testing.assert_array_equal(value, {**params_b, **stats_b}[key], err_msg=key)


def test_bad_targets_fail_before_compute(source_run, image_data_dir):
    config = adapt_config(source_run, image_data_dir, "adabn")
    config.adapt.target = "uci_digits"  # other classes
    with pytest.raises(ConfigError, match="same classes"):
        build_experiment(config)
    config = adapt_config(source_run, image_data_dir, "adabn")
    config.model.kwargs = {"batch_norm": False}
    with pytest.raises(ConfigError, match="no BatchNorm"):
        build_experiment(config, with_data=False)
    config = adapt_config(source_run, image_data_dir, "dann_v2")
    with pytest.raises(ConfigError, match="not one of"):
        build_experiment(config, with_data=False)
    config = adapt_config(source_run, image_data_dir, "tent")
    config.total_steps = 0
    with pytest.raises(ConfigError, match="trains nothing"):
        build_experiment(config, with_data=False)
    config = adapt_config(source_run, image_data_dir, "adabn")
    config.adapt.target = "fashion_mnist_c/fog/9"
    with pytest.raises(ConfigError, match="severity"):
        build_experiment(config)


def test_mixed_methods_read_source_labels_and_unlabelled_target_views(
    source_run, image_data_dir, tmp_path
):
    config = adapt_config(source_run, image_data_dir, "pseudo_label", threshold=0.5)
    config.total_steps, config.plan.name = 4, "finetune"
    exp = build_experiment(config)
    batch = exp.train_batches[1]
    assert batch["label"].shape == (16,)  # the source's labels only
    assert batch["target_image"].shape == batch["target_image_strong"].shape
    assert batch["target_image"].shape[0] == 16 and not np.array_equal(
        batch["target_image"], batch["target_image_strong"]
    )
    summary = train(exp, tmp_path, **QUIET)
    assert summary["results"]["target_test"]["examples"] == 5000
    params, _ = restored(tmp_path)
    source_params, _ = restored(source_run)
    assert not np.array_equal(params["head/kernel"], source_params["head/kernel"])


def test_coral_needs_an_endpoint_the_model_sows(source_run, image_data_dir):
    config = adapt_config(source_run, image_data_dir, "coral", endpoint="dense")
    config.total_steps, config.plan.name = 4, "finetune"
    with pytest.raises(ConfigError, match=r"sows \['conv_1_relu', 'conv_2_pool', 'dense_relu'\]"):
        build_experiment(config, with_data=False)
    config.adapt.endpoint = "dense_relu"
    assert build_experiment(config, with_data=False).model.forward_for_stage is not None


def test_dann_adds_a_fresh_domain_classifier_to_the_source_run(
    source_run, image_data_dir, tmp_path
):
    config = adapt_config(source_run, image_data_dir, "dann", endpoint="dense_relu")
    config.adapt.domain_hidden = 16
    config.total_steps, config.plan.name = 4, "finetune"
    exp = build_experiment(config)
    assert exp.group_names[-2:] == ["domain_classifier", "head"]
    summary = train(exp, tmp_path, **QUIET)
    assert summary["results"]["target_test"]["examples"] == 5000
    params = flatten(Checkpoints(tmp_path / "checkpoints").restore_params())
    assert params["domain_classifier/dense_1/kernel"].shape == (128, 16)
    source_params, _ = restored(source_run)
    assert not np.array_equal(params["dense/kernel"], source_params["dense/kernel"])
