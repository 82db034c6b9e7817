"""BatchNorm policy for frozen groups (frozen | affine | train) on MobileNetV2, ResNet and
Inception v3: one training step changes exactly what the policy says, nothing else."""

import jax
import numpy as np
import pytest

from tlx.steps import make_train_step
from tlx.transfer.batchnorm import batchnorm_param_paths, with_affine_labels, with_fixed_labels
from tlx.transfer.groups import assign_groups
from tlx.transfer.optim import make_optimizer
from tlx.transfer.plans import FROZEN, freeze_to
from tlx.tree import flatten
from tlx.zoo.registry import build_model

ARCHS = [
    ("mobilenet_v2", {"dropout": 0.0}, 32),
    ("resnet", {"depth": 18}, 32),
    ("inception_v3", {"dropout": 0.0, "aux_logits": False}, 75),
]


def one_step(arch, kwargs, size, policy):
    """Init, freeze all but the top two groups, take one Adam step on random images."""
    cfg = {"name": "image_classifier", "arch": arch, "checkpoint": "", "kwargs": kwargs}
    cfg.update(image_size=size, frozen_batchnorm=policy)
    bundle = build_model(cfg, num_classes=3)
    variables = jax.jit(bundle.init)(jax.random.key(0))
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    flat = flatten(params)
    group_of = assign_groups(list(flat), bundle.groups)
    plan = freeze_to(bundle.group_names, 2)
    if policy == "affine":
        plan, group_of = with_affine_labels(plan, group_of, batchnorm_param_paths(flat, state))
    stage = plan.stages[0]
    tx = make_optimizer(stage, group_of, {"learning_rate": 1e-2}, lambda s: 1e-2)
    trainable = [p for p, g in group_of.items() if g in stage.trainable]
    step = jax.jit(make_train_step(bundle.forward_for_stage(stage.trainable), trainable, tx))
    images = jax.random.normal(jax.random.key(1), (4, size, size, 3)) * 2.0 + 0.5
    batch = {"image": images, "label": np.array([0, 1, 2, 0], np.int32)}
    new_params, new_state, _, _ = step(params, state, tx.init(flat), batch, jax.random.key(2))
    bundle_groups = assign_groups(list(flat), bundle.groups)
    frozen_groups = [g for g in bundle.group_names if g not in bundle.group_names[-2:]]
    stats, new_stats = flatten(state["batch_stats"]), flatten(new_state["batch_stats"])
    return flat, flatten(new_params), stats, new_stats, bundle_groups, frozen_groups


@pytest.mark.parametrize("arch,kwargs,size", ARCHS, ids=[a for a, _, _ in ARCHS])
def test_frozen_group_batchnorm_policies(arch, kwargs, size):
    for policy in ("frozen", "affine", "train"):
        before, after, stats, new_stats, group_of, frozen = one_step(arch, kwargs, size, policy)
        bn = batchnorm_param_paths(before, {"batch_stats": stats})
        in_frozen = [p for p in before if group_of[p] in frozen]
        changed = {p for p in in_frozen if not np.array_equal(before[p], after[p])}
        frozen_bn = {p for p in in_frozen if p in bn}
        stats_changed = {
            p
            for p in stats
            if group_of.get(p.rsplit("/", 1)[0] + "/scale") in frozen
            and not np.array_equal(stats[p], new_stats[p])
        }
        assert frozen_bn, "the frozen groups must hold BatchNorm layers for this test"
        if policy == "affine":
            assert changed == frozen_bn, (policy, sorted(changed ^ frozen_bn)[:5])
        else:  # "frozen" and "train" keep every frozen weight
            assert not changed, (policy, sorted(changed)[:5])
        if policy == "train":
            assert stats_changed, policy
        else:
            assert not stats_changed, (policy, sorted(stats_changed)[:5])
        top = [p for p in before if group_of[p] == "head"]
        assert any(not np.array_equal(before[p], after[p]) for p in top), policy


def test_affine_labels_split_batchnorm_out_of_each_group():
    from tlx.transfer.plans import progressive

    group_of = {"a/conv/kernel": "g0", "a/bn/scale": "g0", "b/bn/bias": "g1", "head/w": "head"}
    plan = progressive(["g0", "g1", "head"], every=5)
    plan2, labels = with_affine_labels(plan, group_of, {"a/bn/scale", "b/bn/bias"}, 0.5)
    assert labels == {
        "a/conv/kernel": "g0",
        "a/bn/scale": "g0/bn",
        "b/bn/bias": "g1/bn",
        "head/w": "head",
    }
    first, last = plan2.stages[0].multipliers, plan2.stages[-1].multipliers
    assert first == {"g0": FROZEN, "g0/bn": 0.5, "g1": FROZEN, "g1/bn": 0.5, "head": 1.0}
    assert last == {"g0": 1.0, "g0/bn": 1.0, "g1": 1.0, "g1/bn": 1.0, "head": 1.0}
    with pytest.raises(ValueError, match="must be > 0"):
        with_affine_labels(plan, group_of, set(), 0.0)


def test_fixed_labels_freeze_batchnorm_in_every_stage():
    from tlx.transfer.plans import progressive

    group_of = {"a/conv/kernel": "g0", "a/bn/scale": "g0", "b/bn/bias": "g1", "head/w": "head"}
    plan = progressive(["g0", "g1", "head"], every=5)
    plan2, labels = with_fixed_labels(plan, group_of, {"a/bn/scale", "b/bn/bias"})
    assert labels["a/bn/scale"] == "g0/bn" and labels["a/conv/kernel"] == "g0"
    for stage in plan2.stages:  # /bn stays frozen whether its group trains or not
        assert stage.multipliers["g0/bn"] is FROZEN and stage.multipliers["g1/bn"] is FROZEN
    assert plan2.stages[-1].multipliers["g0"] == 1.0


def test_fixed_batchnorm_trains_the_weights_around_it(image_data_dir):
    """model.batchnorm="fixed" (torchvision's FrozenBatchNorm2d): in the groups that train, the
    convolutions change and every BatchNorm scale, bias and statistic stays as it was."""
    from configs import mnv2_fmnist_freeze_to
    from tlx.experiment import build_experiment
    from tlx.run_start import optimizer_labels

    config = mnv2_fmnist_freeze_to.get_config()
    config.data.data_dir = image_data_dir
    config.model.checkpoint = ""
    config.model.arch = "mobilenet_v2"
    config.model.image_size = config.model.resize_size = 32
    config.model.batchnorm = "fixed"
    exp = build_experiment(config, with_data=False)
    variables = jax.jit(exp.model.init)(jax.random.key(0))
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    flat = flatten(params)
    group_of = assign_groups(list(flat), exp.model.groups)
    plan, labels = optimizer_labels(exp, group_of, flat, state)
    stage = plan.stages[-1]  # the last stage: the most groups train
    tx = make_optimizer(stage, labels, {"learning_rate": 1e-2}, lambda s: 1e-2)
    trainable = [p for p, g in labels.items() if g in stage.trainable]
    forward = exp.model.forward_for_stage(stage.trainable)  # as tlx.stage_program does
    step = jax.jit(make_train_step(forward, trainable, tx))
    images = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    batch = {"image": images, "label": np.array([0, 1, 2, 0], np.int32)}
    new_params, new_state, _, _ = step(params, state, tx.init(flat), batch, jax.random.key(2))
    after = flatten(new_params)
    bn = batchnorm_param_paths(flat, state)
    trains = {p for p, g in group_of.items() if g in stage.trainable}
    assert trains & bn, "a training group must hold BatchNorm layers for this test"
    assert all(np.array_equal(flat[p], after[p]) for p in bn)
    assert any(not np.array_equal(flat[p], after[p]) for p in trains - bn)
    stats, new_stats = flatten(state["batch_stats"]), flatten(new_state["batch_stats"])
    assert all(np.array_equal(stats[p], new_stats[p]) for p in stats)


def test_fixed_batchnorm_refuses_training_frozen_affine():
    from configs import mnv2_fmnist_freeze_to
    from tlx.errors import ConfigError
    from tlx.spec import read_spec

    config = mnv2_fmnist_freeze_to.get_config()
    config.model.batchnorm = "fixed"
    config.model.frozen_batchnorm = "affine"
    with pytest.raises(ConfigError, match="frozen_batchnorm='frozen'"):
        read_spec(config)
    config.model.batchnorm = "frozn"
    config.model.frozen_batchnorm = "frozen"
    with pytest.raises(ConfigError, match="config.model.batchnorm='frozn' is not one of"):
        read_spec(config)


def test_inspect_shows_the_affine_rows(image_data_dir):
    from configs import mnv2_fmnist_freeze_to
    from tlx.experiment import build_experiment
    from tlx.inspect import describe

    config = mnv2_fmnist_freeze_to.get_config()
    config.data.data_dir = image_data_dir
    config.model.frozen_batchnorm = "affine"
    text = describe(build_experiment(config, with_data=False))
    row = next(line for line in text.splitlines() if line.strip().startswith("stage_1/bn"))
    assert "train" in row and "FROZEN" not in row
    audit_rows = [line for line in text.splitlines() if "FROZEN" in line or "train" in line]
    row = next(line for line in audit_rows if line.strip().startswith("stage_1 "))
    assert "FROZEN" in row
