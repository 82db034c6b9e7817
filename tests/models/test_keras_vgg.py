"""tlx's VGG against keras.applications' VGG16 / VGG19, through the legacy HDF5 weight format that
keras.applications downloads: include_top at 224x224, and the `_notop` layout at a small size."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

from tests.models.equivalence import assert_close as _assert_close  # noqa: E402
from tlx.models.vgg import VGG, VGG_ENDPOINTS  # noqa: E402
from tlx.weights.keras_h5 import read_keras_h5  # noqa: E402
from tlx.weights.keras_vgg import convert_keras_vgg  # noqa: E402
from tlx.weights.rules import ConversionError  # noqa: E402

# tlx endpoint -> the Keras layer whose output it equals.
KERAS_LAYER = {f"block{b}": f"block{b}_pool" for b in range(1, 6)} | {
    "fc6_relu": "fc1",
    "fc7_relu": "fc2",
}


def _random_model(factory, seed: int, **kwargs):
    """A keras.applications model holding random weights of our choosing: He-scaled uniform
    kernels (Keras' Glorot init shrinks activations ~2x per ReLU layer, so deep layers would see
    little of the input) and nonzero biases (Keras' are zero), so that every tensor matters.

    The model is built in a StatelessScope that defers Keras' own initialisation: with the JAX
    backend that would compile a random-number program per weight shape (~15 s of CPU) for
    values overwritten at once. clear_session then drops Keras' list of the deferred variables,
    which are all assigned by then.
    """
    with keras.StatelessScope(initialize_variables=False):
        model = factory(weights=None, **kwargs)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if len(shape) > 1:  # kernel: uniform with He's variance 2 / fan_in
            bound = np.float32(np.sqrt(6.0 / np.prod(shape[:-1])))
            value = (rng.random(shape, dtype=np.float32) * 2 - 1) * bound
        else:
            value = rng.normal(0.0, 0.1, shape).astype(np.float32)
        variable.assign(value)
    keras.backend.clear_session()
    return model


def _legacy_h5(model, path) -> dict[str, np.ndarray]:
    """Write the weights as keras.applications' downloads are written, then read them back."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return read_keras_h5(path)


def _keras_outputs(model, x, layers) -> list[np.ndarray]:
    probe = keras.Model(model.input, [model.get_layer(name).output for name in layers])
    return [np.asarray(y) for y in probe(x, training=False)]


@pytest.fixture(scope="module")
def vgg16_top(tmp_path_factory):
    """keras VGG16 with its top (logits: no softmax), its weights file read back, converted."""
    model = _random_model(keras.applications.VGG16, seed=0, classifier_activation=None)
    weights = _legacy_h5(model, tmp_path_factory.mktemp("keras") / "vgg16.h5")
    return model, weights, jax.device_put(convert_keras_vgg(weights, depth=16))


@pytest.fixture(scope="module")
def vgg19_notop(tmp_path_factory):
    model = _random_model(
        keras.applications.VGG19, seed=1, include_top=False, input_shape=(64, 64, 3), pooling="avg"
    )
    weights = _legacy_h5(model, tmp_path_factory.mktemp("keras") / "vgg19_notop.h5")
    return model, weights, convert_keras_vgg(weights, depth=19)


def test_include_top_logits_and_endpoints_match_keras_at_224(vgg16_top):
    model, _, variables = vgg16_top
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
    names = [KERAS_LAYER[e] for e in VGG_ENDPOINTS] + ["predictions"]
    *theirs, expected = _keras_outputs(model, x, names)
    logits, state = jax.jit(lambda v, x: VGG(depth=16).apply(v, x, mutable=["intermediates"]))(
        variables, jnp.asarray(x)
    )
    assert logits.shape == (1, 1000)
    _assert_close(logits, expected)
    for endpoint, want in zip(VGG_ENDPOINTS, theirs):
        _assert_close(state["intermediates"][endpoint][0], want)


def test_notop_features_and_endpoints_match_keras(vgg19_notop):
    model, weights, variables = vgg19_notop
    assert set(variables) == {"params"}
    assert not any(k.startswith(("fc", "head")) for k in variables["params"])
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype(np.float32)
    blocks = [f"block{b}" for b in range(1, 6)]
    theirs = _keras_outputs(model, x, [KERAS_LAYER[b] for b in blocks])
    expected = np.asarray(model(x, training=False))  # pooling="avg"
    module = VGG(depth=19, num_classes=None, pooling="avg")
    pooled, state = jax.jit(lambda v, x: module.apply(v, x, mutable=["intermediates"]))(
        variables, jnp.asarray(x)
    )
    assert pooled.shape == (2, 512)
    _assert_close(pooled, expected)
    for block, want in zip(blocks, theirs):
        _assert_close(state["intermediates"][block][0], want)
    fmap = VGG(depth=19, num_classes=None, pooling=None).apply(variables, jnp.asarray(x))
    _assert_close(fmap, theirs[-1])  # Keras include_top=False, pooling=None: block5_pool


def test_file_layout_is_keras_applications(vgg16_top):
    """read_keras_h5 keeps the file's layer order and Keras' own weight names."""
    _, weights, _ = vgg16_top
    keys = list(weights)
    assert keys[:2] == ["block1_conv1/kernel", "block1_conv1/bias"]
    assert keys[-2:] == ["predictions/kernel", "predictions/bias"]
    assert weights["fc1/kernel"].shape == (7 * 7 * 512, 4096)


def test_wrong_layout_is_reported(vgg16_top, vgg19_notop):
    top16, notop19 = vgg16_top[1], vgg19_notop[1]
    with pytest.raises(ConversionError, match=r"missing source key 'fc1/kernel'"):
        convert_keras_vgg(notop19, depth=19, include_top=True)
    with pytest.raises(ConversionError, match=r"unmatched source key 'fc1/kernel'"):
        convert_keras_vgg(top16, depth=16, include_top=False)
    with pytest.raises(ConversionError) as info:  # a VGG16 file is no VGG19 one
        convert_keras_vgg(top16, depth=19)
    assert "block3_conv4/kernel" in str(info.value) and "block5_conv4/bias" in str(info.value)
    bad = dict(top16, **{"block2_conv1/bias": np.zeros(3, np.float32)})
    with pytest.raises(ConversionError, match=r"block2_conv1/bias.*\(3,\)"):
        convert_keras_vgg(bad, depth=16)
    missing = {k: v for k, v in notop19.items() if k != "block4_conv2/kernel"}
    with pytest.raises(ConversionError, match=r"block4_conv2/kernel"):
        convert_keras_vgg(missing, depth=19)
