"""The feature cache: cached training equals uncached training, the cut is found and checked,
disk caches are reused and dropped, and runs that cannot be cached fail before any compute."""

import json
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mnv2_fmnist_freeze_to
from tests.test_image_training import small
from tests.test_trainer import params_of, tiny_config
from tlx.experiment import build_experiment
from tlx.trainer import train
from tlx.transfer import feature_cache
from tlx.transfer.groups import assign_groups
from tlx.transfer.plans import feature_extraction, freeze_to
from tlx.tree import flatten

quiet = dict(progress=False)


def assert_same_params(a, b, atol=2e-5):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=atol, rtol=1e-4, err_msg=key)


@pytest.fixture(scope="module")
def dropout_free_bert_dir(tiny_bert_dir, tmp_path_factory):
    """The tiny BERT without dropout: frozen layers then compute the same in training and in
    evaluation, so cached and uncached runs must agree exactly (up to float rounding)."""
    folder = tmp_path_factory.mktemp("tiny_bert_no_dropout")
    for path in tiny_bert_dir.iterdir():
        shutil.copy(path, folder / path.name)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_progressive_text_run_with_cache_equals_uncached(
    dropout_free_bert_dir, rt_data_dir, tmp_path
):
    """Stages at 0, 2, 4, 6 freeze ever fewer groups: the cache is cut at the pooled output,
    then at per-token layer outputs, dropped and rebuilt at each boundary, and gone when the
    embeddings unfreeze. Final parameters equal the uncached run's."""
    runs = {}
    for mode in ("off", "memory"):
        config = tiny_config(dropout_free_bert_dir, rt_data_dir, feature_cache=mode)
        config.data.buckets = (16, 32, 64)  # per-token caches re-pad batches to these lengths
        logs = []
        summary = train(build_experiment(config), tmp_path / mode, log=logs.append, **quiet)
        runs[mode] = (params_of(tmp_path / mode), logs, summary["results"])
    assert_same_params(runs["off"][0], runs["memory"][0])
    for split, result in runs["off"][2].items():  # evaluations also run on cached features
        assert runs["memory"][2][split]["examples"] == result["examples"]
        np.testing.assert_allclose(runs["memory"][2][split]["loss"], result["loss"], rtol=1e-4)
    logs = "\n".join(runs["memory"][1])
    cuts = [
        line.split("cut at module ")[1].split(",")[0]
        for line in logs.splitlines()
        if line.startswith("feature cache:")
    ]
    assert len(cuts) == 3, logs  # three stages have a frozen prefix; the last trains everything
    assert len(set(cuts)) == 3 and logs.count("Dropping the feature cache") == 3
    assert "feature cache" not in "\n".join(runs["off"][1])


def image_config(data_dir, **overrides):
    config = small(mnv2_fmnist_freeze_to.get_config(), data_dir, **overrides)
    config.data.augment = "none"
    config.model.kwargs = {"dropout": 0.0}
    config.plan.k = 3  # head, last_conv, stage_7 train; the cut is features_16
    return config


def test_image_run_with_disk_cache_equals_uncached_and_is_reused(image_data_dir, tmp_path):
    off = image_config(image_data_dir, feature_cache="off")
    train(build_experiment(off), tmp_path / "off", log=lambda *_: None, **quiet)
    logs = []
    disk = image_config(image_data_dir, feature_cache="disk")
    train(build_experiment(disk), tmp_path / "disk", log=logs.append, **quiet)
    assert_same_params(params_of(tmp_path / "off"), params_of(tmp_path / "disk"))
    assert any("cut at module 'features_16'" in line for line in logs), logs
    [folder] = (tmp_path / "disk/feature_cache").iterdir()
    features = np.load(folder / "features.npy")
    assert features.shape == (64, 1, 1, 160)  # 64 examples, stage_6 output at 32px: 1x1x160
    assert np.load(folder / "labels.npy").shape == (64,)

    # A rerun in the same workdir (here: from step 0) reads the cache instead of recomputing it.
    shutil.rmtree(tmp_path / "disk/checkpoints")
    logs = []
    train(build_experiment(disk), tmp_path / "disk", log=logs.append, **quiet)
    assert any("Reusing the feature cache" in line for line in logs), logs
    assert_same_params(params_of(tmp_path / "off"), params_of(tmp_path / "disk"))


def test_cached_step_compiles_without_the_frozen_groups(image_data_dir):
    """XLA drops everything below the cut: a cached feature-extraction step on MobileNetV2 costs
    a small fraction of the uncached step's FLOPs."""
    from tlx.steps import make_train_step
    from tlx.transfer.optim import make_optimizer

    config = image_config(image_data_dir, feature_cache="memory")
    exp = build_experiment(config)
    variables = jax.jit(exp.model.init)(jax.random.key(0))
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    group_of = assign_groups(list(flatten(params)), exp.model.groups)
    stage = feature_extraction(exp.group_names).stages[0]
    tx = make_optimizer(stage, group_of, config.optim, lambda s: 1e-3)
    trainable = [p for p, g in group_of.items() if g in stage.trainable]
    cache = feature_cache.build(
        stage_forward=exp.model.forward,
        params=params,
        model_state=state,
        group_of=group_of,
        prefix=feature_cache.frozen_prefix(stage, exp.group_names),
        examples=exp.cacheable,
        mode="memory",
        workdir=None,
        chunk=32,
        log=lambda *_: None,
        progress=False,
    )
    assert cache.cut == "features_18"

    def flops(forward, batch):
        step = make_train_step(forward, trainable, tx)
        args = (params, state, tx.init(flatten(params)), batch, jax.random.key(0))
        cost = jax.jit(step).lower(*args).compile().cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"]

    indices = np.arange(8)
    uncached = flops(exp.model.forward, exp.cacheable.make_batch(indices))
    cached = flops(cache.forward(exp.model.forward), cache.store.batch(indices))
    assert cached < 0.01 * uncached, (cached, uncached)


class SkipNet(nn.Module):
    """The output reads `a` directly as well as through `b`: a cut at `b` misses a skip path."""

    @nn.compact
    def __call__(self, x):
        a = nn.Dense(4, name="a")(x)
        b = nn.Dense(4, name="b")(a)
        return nn.Dense(3, name="head")(b + a)


def test_a_cut_that_misses_a_skip_connection_is_caught():
    module = SkipNet()
    params = module.init(jax.random.key(0), jnp.ones((1, 5)))["params"]
    forward = lambda p, s, batch, rng, train: (module.apply({"params": p}, batch["x"]), s)
    group_of = assign_groups(
        list(flatten(params)), [("a", "^a/"), ("b", "^b/"), ("head", "^head/")]
    )
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    examples = feature_cache.CacheableExamples(
        num_examples=6,
        index_batches=None,
        make_batch=lambda idx: {"x": x[idx], "label": np.zeros(len(idx), np.int32)},
        recipe="toy",
    )
    build = lambda prefix: feature_cache.build(
        stage_forward=forward,
        params=params,
        model_state={},
        group_of=group_of,
        prefix=prefix,
        examples=examples,
        mode="memory",
        workdir=None,
        chunk=4,
        log=lambda *_: None,
        progress=False,
    )
    assert build(("a",)).cut == "a"  # no skip around a: fine
    with pytest.raises(feature_cache.FeatureCacheError, match="besides that module's output"):
        build(("a", "b"))


def test_frozen_prefix_is_the_frozen_groups_below_the_lowest_trainable():
    groups = ["g0", "g1", "g2", "head"]
    assert feature_cache.frozen_prefix(freeze_to(groups, 2).stages[0], groups) == ("g0", "g1")
    stage = feature_extraction(groups).stages[0]
    assert feature_cache.frozen_prefix(stage, groups) == ("g0", "g1", "g2")
    stage = type(stage)(0, {"g0": 1.0, "g1": None, "g2": None, "head": 1.0})
    assert feature_cache.frozen_prefix(stage, groups) == ()


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"feature_cache": "yes"}, "must be one of"),
        ({"feature_cache": "memory", "augment": "random_resized_crop"}, "data.augment"),
        ({"feature_cache": "memory", "frozen_batchnorm": "train"}, "frozen_batchnorm"),
    ],
)
def test_uncacheable_runs_fail_before_any_compute(image_data_dir, overrides, match):
    config = image_config(image_data_dir, feature_cache=overrides["feature_cache"])
    if "augment" in overrides:
        config.data.augment = overrides["augment"]
    if "frozen_batchnorm" in overrides:
        config.model.frozen_batchnorm = overrides["frozen_batchnorm"]
    with pytest.raises(feature_cache.FeatureCacheError, match=match):
        build_experiment(config, with_data=False)
