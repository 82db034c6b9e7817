"""tlx's InceptionV3 against keras.applications.InceptionV3, through the legacy .h5 weight files
keras.applications downloads (written here from a random Keras model, read by read_keras_h5):
the include_top file, the notop file, every Mixed block, and the average-pool padding rule that
sets Keras apart from torchvision.

Building Keras' InceptionV3 takes tens of seconds, so one model is built, with a free-size input
(include_top=True normally pins 299x299; an `input_tensor` lifts that, the layers are the same),
and one Keras forward at 107x107 (Mixed_7c / mixed10 is 2x2) gives every reference.
"""

from __future__ import annotations

import os
import re

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

from tests.models.equivalence import assert_close as _assert_close  # noqa: E402
from tlx.models.inception_v3 import InceptionA, InceptionV3  # noqa: E402
from tlx.tree import flatten  # noqa: E402
from tlx.weights.keras_h5 import read_keras_h5  # noqa: E402
from tlx.weights.keras_inception import (  # noqa: E402
    BASIC_CONV_ORDER,
    convert_keras_inception_v3,
    pair_keras_layers,
)
from tlx.weights.rules import ConversionError  # noqa: E402

# Keras' concatenation layers -> tlx's endpoints.
_BLOCKS = ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")
MIXED = {f"mixed{i}": f"Mixed_{b}_out" for i, b in enumerate(_BLOCKS)}


def _he_normal_numpy(seed: int):
    """A stand-in for Keras' default (glorot) kernel initializer while the model is built: Keras
    draws with a JAX random kernel compiled anew for each of the 57 distinct kernel shapes
    (over a minute on 2 CPUs); numpy draws them at once. He-scaled, so activations stay O(1)
    through 94 convs."""
    rng = np.random.default_rng(seed)

    def init(self, shape, dtype=None):
        fan_in = int(np.prod(shape[:-1]))
        return rng.normal(0.0, (2.0 / fan_in) ** 0.5, shape).astype(np.float32)

    return init


def _randomise(model, seed: int = 1):
    """Random BN beta and moving statistics and a random classifier bias (Keras initialises them
    to constants), so that every converted tensor matters."""
    rng = np.random.default_rng(seed)

    def normal(std, shape):
        return rng.normal(0.0, std, shape).astype(np.float32)

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.gamma is None  # scale=False: the converter must write ones
            n = layer.beta.shape[0]
            layer.beta.assign(normal(0.2, n))
            layer.moving_mean.assign(normal(0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
        elif isinstance(layer, keras.layers.Dense):
            layer.bias.assign(normal(0.1, layer.bias.shape))


def _save_legacy_h5(model, path) -> dict[str, np.ndarray]:
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return read_keras_h5(path)


@pytest.fixture(scope="module")
def keras_ref(tmp_path_factory):
    """(include_top weights, notop weights, Keras outputs at 107x107 by layer name, input)."""
    inputs = keras.Input(shape=(None, None, 3))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.initializers.VarianceScaling, "__call__", _he_normal_numpy(0))
        model = keras.applications.InceptionV3(
            weights=None, input_tensor=inputs, classifier_activation=None
        )
    _randomise(model)
    notop = keras.Model(inputs, model.get_layer("mixed10").output)  # the notop file's layers
    tmp = tmp_path_factory.mktemp("keras_inception")
    top_weights = _save_legacy_h5(model, tmp / "inception_v3_top.h5")
    notop_weights = _save_legacy_h5(notop, tmp / "inception_v3_notop.h5")

    names = ["max_pooling2d_1", *MIXED, "predictions"]  # max_pooling2d_1 feeds mixed0
    probe = keras.Model(inputs, [model.get_layer(n).output for n in names])
    x = np.random.default_rng(1).uniform(-1, 1, (2, 107, 107, 3)).astype(np.float32)
    outputs = dict(zip(names, (np.asarray(o) for o in probe.predict(x, verbose=0))))
    return top_weights, notop_weights, outputs, x


@pytest.fixture(scope="module")
def ours(keras_ref):
    """tlx at 107x107 with the trunk from the notop file and fc from the include_top file:
    logits, intermediates and the unpooled map in one jit (one trunk to compile)."""
    top_weights, notop_weights, _, x = keras_ref
    top = convert_keras_inception_v3(top_weights)
    notop = convert_keras_inception_v3(notop_weights)
    variables = {**notop, "params": {**notop["params"], "fc": top["params"]["fc"]}}

    def outputs(v, x):
        model = InceptionV3(avg_pool_count_include_pad=False)
        logits, state = model.apply(v, x, mutable=["intermediates"])
        fmap = InceptionV3(num_classes=None, pooling=None, avg_pool_count_include_pad=False)
        return logits, state["intermediates"], fmap.apply(v, x)

    return top, notop, jax.jit(outputs)(variables, jnp.asarray(x))


def test_include_top_logits_match_keras(keras_ref, ours):
    _, _, outputs, _ = keras_ref
    _, _, (logits, _, _) = ours
    assert logits.shape == (2, 1000)
    _assert_close(logits, outputs["predictions"])


def test_notop_map_and_every_mixed_block_match_keras(keras_ref, ours):
    _, _, outputs, _ = keras_ref
    _, _, (_, intermediates, fmap) = ours
    assert fmap.shape == (2, 2, 2, 2048)
    _assert_close(fmap, outputs["mixed10"])
    _assert_close(intermediates["maxpool2"][0], outputs["max_pooling2d_1"])
    for keras_name, endpoint in MIXED.items():
        _assert_close(intermediates[endpoint][0], outputs[keras_name])


def test_notop_file_converts_to_the_same_trunk(ours):
    top, notop, _ = ours
    assert "fc" not in notop["params"] and "AuxLogits" not in top["params"]
    flat_top = flatten({c: top[c] for c in ("params", "batch_stats")})
    flat_notop = flatten({c: notop[c] for c in ("params", "batch_stats")})
    assert set(flat_top) - set(flat_notop) == {"params/fc/kernel", "params/fc/bias"}
    for path, value in flat_notop.items():
        np.testing.assert_array_equal(value, flat_top[path])
    scales = [v for k, v in flat_top.items() if k.endswith("bn/scale")]
    assert len(scales) == 94 and all(np.all(s == 1.0) for s in scales)  # Keras' scale=False


def test_keras_needs_padding_excluded_from_average_pools(keras_ref, ours):
    """Keras' mixed0 from its own input: tlx's Mixed_5b matches with count_include_pad=False
    (Keras/TF's 'same' average pool) and is measurably off at the border with torchvision's
    True, so the flag is what makes Keras' weights load correctly."""
    _, _, outputs, _ = keras_ref
    top, _, _ = ours
    block_vars = {c: top[c]["Mixed_5b"] for c in ("params", "batch_stats")}
    x = jnp.asarray(outputs["max_pooling2d_1"])  # 11x11 at 107x107 inputs
    outs = {
        pad: InceptionA(32, count_include_pad=pad).apply(block_vars, x) for pad in (True, False)
    }
    _assert_close(outs[False], outputs["mixed0"])
    diff = np.abs(np.asarray(outs[True]) - outputs["mixed0"])
    assert diff.max() > 1e-2, "count_include_pad=True would have passed: the test shows nothing"
    assert diff[..., :224].max() <= 1e-4  # only the pool branch (the last 32 channels) differs,
    assert diff[:, 1:-1, 1:-1].max() <= 1e-4  # and only where the 3x3 window meets the padding


def _renumbered(weights, conv_offset: int, bn_offset: int, seed: int = 0):
    """The same weights named as another Keras session would: counters shifted, order shuffled."""

    def rename(key):
        layer, rest = key.split("/", 1)
        for base, offset in (("conv2d", conv_offset), ("batch_normalization", bn_offset)):
            if m := re.fullmatch(rf"{base}(?:_(\d+))?", layer):
                n = int(m.group(1) or 0) + offset
                layer = f"{base}_{n}" if n else base
        return f"{layer}/{rest}"

    keys = list(weights)
    np.random.default_rng(seed).shuffle(keys)
    return {rename(k): weights[k] for k in keys}


def test_pairing_uses_creation_order_not_literal_numbers_or_file_order(keras_ref, ours):
    """The downloaded files (Keras 2) number conv2d_1 ... conv2d_94; other sessions start higher,
    and the two counters need not agree. Same tensors in, same variables out."""
    top_weights, _, _, _ = keras_ref
    top, _, _ = ours
    renamed = _renumbered(top_weights, conv_offset=1, bn_offset=188)
    pairs = pair_keras_layers(renamed)
    assert pairs[0] == ("conv2d_1", "batch_normalization_188", "Conv2d_1a_3x3")
    assert pairs[-1] == ("conv2d_94", "batch_normalization_281", "Mixed_7c/branch_pool")
    assert [p for _, _, p in pairs] == list(BASIC_CONV_ORDER)
    converted = flatten(convert_keras_inception_v3(renamed))
    for path, value in flatten(top).items():
        np.testing.assert_array_equal(converted[path], value)


def test_mispaired_and_missing_layers_are_reported(keras_ref):
    top_weights, _, _, _ = keras_ref
    swapped = dict(top_weights)  # conv #1 (32 -> 32) and conv #2 (32 -> 64) trade places
    swapped["conv2d_1/kernel"], swapped["conv2d_2/kernel"] = (
        top_weights["conv2d_2/kernel"],
        top_weights["conv2d_1/kernel"],
    )
    with pytest.raises(ConversionError) as err:
        convert_keras_inception_v3(swapped)
    problems = "\n".join(err.value.problems)
    assert "'conv2d_1', has kernel (3, 3, 32, 64); it pairs with 'Conv2d_2a_3x3'" in problems
    assert "'conv2d_2', has kernel (3, 3, 32, 32); it pairs with 'Conv2d_2b_3x3'" in problems

    dropped = {k: v for k, v in top_weights.items() if not k.startswith("conv2d_50/")}
    with pytest.raises(ConversionError, match="found 93 Conv2D layers"):
        convert_keras_inception_v3(dropped)

    extra = {**top_weights, "predictions/extra": np.zeros(3, np.float32)}
    with pytest.raises(ConversionError, match="predictions/extra"):
        convert_keras_inception_v3(extra)
