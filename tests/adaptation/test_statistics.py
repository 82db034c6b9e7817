"""AdaBN's statistics pass against a direct numpy computation on the target set."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlx.adaptation.statistics import combine, reestimate_batchnorm
from tlx.tree import flatten


class TwoBatchNorms(nn.Module):
    """dense -> BN -> relu -> dense -> BN: the second BN's inputs depend on the first's."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(6, name="dense_1")(x.reshape(len(x), -1))
        # use_running_average at call time, as tlx's models pass it (interceptable)
        x = nn.BatchNorm(name="bn_1")(x, use_running_average=not train)
        x = nn.Dense(5, name="dense_2")(nn.relu(x))
        return nn.BatchNorm(name="bn_2")(x, use_running_average=not train)


def direct_statistics(variables, images):
    """Each layer's population mean and biased variance over `images`, computed layer by layer
    with numpy in float64, each BN normalising with the statistics of the whole set."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["params"])
    out = {}
    x = images.reshape(len(images), -1).astype(np.float64)
    h = x @ p["dense_1"]["kernel"] + p["dense_1"]["bias"]
    out["bn_1"] = (h.mean(0), h.var(0))
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * p["bn_1"]["scale"] + p["bn_1"]["bias"]
    h = np.maximum(h, 0) @ p["dense_2"]["kernel"] + p["dense_2"]["bias"]
    out["bn_2"] = (h.mean(0), h.var(0))
    return out


@pytest.fixture
def model_and_data():
    module = TwoBatchNorms()
    images = np.asarray(jax.random.normal(jax.random.key(1), (40, 3, 3, 1))) * 3.0 + 1.5
    variables = module.init(jax.random.key(0), jnp.asarray(images[:2]))
    # affine parameters away from (1, 0), so a wrong normalisation shows downstream
    variables["params"]["bn_1"]["scale"] = variables["params"]["bn_1"]["scale"] * 1.7
    variables["params"]["bn_1"]["bias"] = variables["params"]["bn_1"]["bias"] + 0.3
    return module, variables, images


def run_pass(module, variables, batches):
    state = {"batch_stats": variables["batch_stats"]}
    new = reestimate_batchnorm(module, variables["params"], state, batches)
    return flatten(new["batch_stats"])


def test_one_batch_of_the_whole_set_equals_the_direct_computation(model_and_data):
    module, variables, images = model_and_data
    stats = run_pass(module, variables, [{"image": images}])
    expected = direct_statistics(variables, images)
    for layer, (mean, var) in expected.items():
        # float32 activations of scale ~5: 1e-5 relative to the layer's own spread
        scale = float(np.sqrt(var).max())
        np.testing.assert_allclose(stats[f"{layer}/mean"], mean, atol=1e-5 * scale, rtol=0)
        np.testing.assert_allclose(stats[f"{layer}/var"], var, atol=1e-5 * scale**2, rtol=1e-5)


def test_batches_with_padding_give_the_first_layer_exactly(model_and_data):
    """Batches of 16 (the last padded with garbage rows of weight 0): the first BN layer's
    statistics are the whole set's, exactly; the padding changes nothing."""
    module, variables, images = model_and_data
    padded = np.concatenate([images, np.full((8, 3, 3, 1), 1e3, np.float32)])
    weight = (np.arange(48) < 40).astype(np.float32)
    batches = [{"image": padded[i : i + 16], "weight": weight[i : i + 16]} for i in (0, 16, 32)]
    stats = run_pass(module, variables, batches)
    mean, var = direct_statistics(variables, images)["bn_1"]
    scale = float(np.sqrt(var).max())
    np.testing.assert_allclose(stats["bn_1/mean"], mean, atol=1e-5 * scale, rtol=0)
    np.testing.assert_allclose(stats["bn_1/var"], var, rtol=1e-5)
    # the deeper layer: the usual AdaBN estimate, close to the population's but not equal
    mean2, var2 = direct_statistics(variables, images)["bn_2"]
    assert np.all(np.isfinite(stats["bn_2/var"]))
    np.testing.assert_allclose(stats["bn_2/mean"], mean2, atol=0.5 * float(np.sqrt(var2).max()))


def test_pairwise_combination_equals_one_pass():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 3)) * 4 + 2, rng.normal(size=(12, 3)) - 1

    def summary(x):
        return np.full(3, float(len(x))), x.mean(0), ((x - x.mean(0)) ** 2).sum(0)

    n, mean, m2 = combine(summary(a), summary(b))
    whole = np.concatenate([a, b])
    np.testing.assert_allclose(n, 19)
    np.testing.assert_allclose(mean, whole.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m2 / n, whole.var(0), rtol=1e-12)


def test_a_model_without_batchnorm_is_refused():
    module = nn.Dense(3)
    variables = module.init(jax.random.key(0), jnp.ones((1, 4)))
    with pytest.raises(ValueError, match="no BatchNorm"):
        reestimate_batchnorm(module, variables["params"], {}, [{"image": np.ones((2, 4))}])
