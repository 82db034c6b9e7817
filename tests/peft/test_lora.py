"""LoRA on kernels matched by a regex (tlx.peft.lora): the model's code unchanged, the factors
beside the kernels, merged and unmerged outputs equal, bad input refused before compute."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.equivalence import assert_close, max_abs_diff
from tlx.errors import ConfigError
from tlx.peft import apply_peft, merge_lora
from tlx.spec import PeftSpec
from tlx.tree import flatten, unflatten
from tlx.zoo.bundles import ModelBundle


class TinyNet(nn.Module):
    """A convolution, a depthwise convolution and two dense layers: what LoRA meets in CNNs."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(8, (3, 3), strides=2, padding="SAME", name="conv")(x))
        x = nn.Conv(8, (3, 3), feature_group_count=8, name="depthwise")(x)
        x = nn.Dropout(0.1, deterministic=not train)(x.mean(axis=(1, 2)))
        x = nn.relu(nn.Dense(16, name="dense")(x))
        return nn.Dense(3, name="head")(x)


def tiny_bundle():
    module = TinyNet()

    def forward(params, model_state, batch, rng, train):
        rngs = {"dropout": rng} if train else None
        return module.apply({"params": params}, batch["image"], train, rngs=rngs), model_state

    init = lambda rng: module.init(rng, jnp.zeros((1, 8, 8, 3)))
    groups = [("conv", "^(conv|depthwise)/"), ("dense", "^dense/"), ("head", "^head/")]
    return ModelBundle(module, groups, forward, init)


def lora(bundle, **fields):
    shapes = jax.eval_shape(bundle.init, jax.random.key(0))
    param_shapes = {p: s.shape for p, s in flatten(shapes["params"]).items()}
    return apply_peft(bundle, PeftSpec(method="lora", **fields), param_shapes)


BATCH = {"image": np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype(np.float32)}


def with_random_b(params, seed=1):
    """The factors' B set random (it starts at 0, where LoRA changes nothing)."""
    flat = flatten(params)
    rng = np.random.default_rng(seed)
    for p in flat:
        if p.endswith("/lora_b"):
            flat[p] = jnp.asarray(rng.standard_normal(flat[p].shape).astype(np.float32))
    return unflatten(flat)


def test_factors_sit_beside_matched_kernels_in_the_kernels_group():
    bundle = lora(tiny_bundle(), targets="^(conv|dense)/kernel", rank=2)
    params = flatten(bundle.init(jax.random.key(0))["params"])
    assert params["conv/lora_a"].shape == (3, 3, 3, 2) and params["conv/lora_b"].shape == (2, 8)
    assert params["dense/lora_a"].shape == (8, 2) and params["dense/lora_b"].shape == (2, 16)
    assert not any(p.startswith(("head/lora", "depthwise/lora")) for p in params)
    assert not params["dense/lora_b"].any()  # B = 0: the model starts as the pretrained one


def test_at_init_lora_leaves_the_model_unchanged_and_merged_equals_unmerged_after():
    base = tiny_bundle()
    bundle = lora(base, targets="^(conv|dense)/kernel", rank=4, alpha=8.0)
    params = bundle.init(jax.random.key(0))["params"]
    base_params, _ = unflatten({p: v for p, v in flatten(params).items() if "lora" not in p}), 0
    plain = base.forward(base_params, {}, BATCH, None, False)[0]
    assert_close(bundle.forward(params, {}, BATCH, None, False)[0], plain, rtol=1e-6)
    trained = with_random_b(params)
    unmerged = bundle.forward(trained, {}, BATCH, None, False)[0]
    merged = base.forward(merge_lora(trained, scale=8.0 / 4), {}, BATCH, None, False)[0]
    # The same function computed two ways (float32 reassociation): relative 1e-5.
    assert_close(merged, unmerged, rtol=1e-5)
    assert np.abs(np.asarray(unmerged) - np.asarray(plain)).max() > 1e-2  # LoRA did something


def test_gradients_reach_the_factors_and_lora_dropout_acts_in_training():
    bundle = lora(tiny_bundle(), targets="^dense/kernel", rank=2, dropout=0.5)
    params = with_random_b(bundle.init(jax.random.key(0))["params"])

    def loss(p, rng):
        return bundle.forward(p, {}, BATCH, rng, True)[0].sum()

    grads = flatten(jax.grad(loss)(params, jax.random.key(3)))
    assert np.abs(grads["dense/lora_a"]).max() > 0 and np.abs(grads["dense/lora_b"]).max() > 0
    a = bundle.forward(params, {}, BATCH, jax.random.key(3), True)[0]
    b = bundle.forward(params, {}, BATCH, jax.random.key(4), True)[0]
    assert not np.allclose(a, b)  # different dropout masks


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"targets": "^nothing_like_this"}, "matches no dense or convolution kernel"),
        ({"targets": "^dense/kernel", "rank": 9}, "larger than the smaller side"),
        ({"targets": "(unclosed"}, "not a regular expression"),
        ({"targets": ""}, "needs peft.targets"),
        ({"targets": "^dense", "alpha": 0.0}, "peft.alpha"),
        ({"targets": "^dense", "dropout": 1.0}, "peft.dropout"),
    ],
)
def test_bad_lora_settings_are_refused_before_compute(fields, message):
    with pytest.raises(ConfigError, match=message):
        lora(tiny_bundle(), **fields)


def test_lora_on_a_depthwise_convolution_is_refused_when_traced():
    bundle = lora(tiny_bundle(), targets="^depthwise/kernel", rank=1)
    params = bundle.init(jax.random.key(0))["params"]
    with pytest.raises(ConfigError, match="grouped"):
        jax.eval_shape(lambda p: bundle.forward(p, {}, BATCH, None, False), params)


def test_an_unknown_method_is_refused():
    bad = dataclasses.replace(PeftSpec(), method="prefix")
    with pytest.raises(ConfigError, match="peft.method='prefix'"):
        apply_peft(tiny_bundle(), bad, {})


def test_the_configs_peft_section_is_the_specs_defaults():
    """--config.peft.method=lora needs the section in the config; its values are PeftSpec's."""
    from configs import minilm_rt_base, mnv2_fmnist_base

    for module in (minilm_rt_base, mnv2_fmnist_base):
        section = module.base_config().peft.to_dict()
        assert PeftSpec.of(section) == PeftSpec()
        assert set(section) == {f.name for f in dataclasses.fields(PeftSpec)}


def test_lora_on_mobilenet_v2_pointwise_convolutions_merges_exactly_and_skips_depthwise():
    from tlx.zoo.registry import build_model

    spec = {"name": "image_classifier", "arch": "mobilenet_v2", "checkpoint": "", "image_size": 32}
    base = build_model(spec, num_classes=4)
    with pytest.raises(ConfigError, match="grouped"):  # the depthwise kernels are [3, 3, 1, C]
        bundle = lora(base, targets="features_2/depthwise/conv/kernel", rank=1)
        variables = bundle.init(jax.random.key(0))
        jax.eval_shape(lambda v: bundle.forward(v["params"], v, BATCH32, None, False), variables)
    bundle = lora(base, targets="features_(1[0-7])/(expand|project)/conv/kernel", rank=4)
    variables = bundle.init(jax.random.key(0))
    params, state = with_random_b(variables["params"]), {"batch_stats": variables["batch_stats"]}
    unmerged = bundle.forward(params, state, BATCH32, None, False)[0]
    merged = base.forward(merge_lora(params, scale=16.0 / 4), state, BATCH32, None, False)[0]
    # W x + s B (A x) against (W + s B A) x through 16 adapted layers (of MobileNetV2's 52) with
    # random B as large as W: float32 rounding differs by the order of the sums. Under 84 ulps
    # of the logits' scale on AVX-512 EPYCs (an rtol of 1e-5 held there), 203 on an AVX2 one
    # (Zen 3), so the convnets' rtol (equivalence.py, ~840 ulps). A wrong merge (here: the scale
    # of rank 8 for rank 4) moves the logits by far more than that.
    assert_close(merged, unmerged, rtol=1e-4)
    wrong = base.forward(merge_lora(params, scale=16.0 / 8), state, BATCH32, None, False)[0]
    assert max_abs_diff(wrong, unmerged) > 100 * 1e-4 * np.max(np.abs(unmerged))


BATCH32 = {"image": np.random.default_rng(5).standard_normal((2, 32, 32, 3)).astype(np.float32)}
