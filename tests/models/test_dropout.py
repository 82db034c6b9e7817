"""tlx's 16-bit dropout: the rate it realises, its scaling, its determinism and its edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlx.models.dropout import LEVELS, Dropout, drop_threshold, dropout


def apply(rate, x, key=0, deterministic=False):
    return Dropout(rate).apply(
        {}, x, deterministic=deterministic, rngs={"dropout": jax.random.key(key)}
    )


def test_drops_the_rate_asked_for_and_scales_kept_elements_by_the_realised_keep_probability():
    x = jnp.ones((1000, 1001), jnp.float32)  # odd size: the last random word is half used
    out = np.asarray(apply(0.1, x))
    dropped = np.mean(out == 0)
    assert abs(dropped - 0.1) < 0.002  # 1e6 draws: the standard error is 3e-4
    keep = (LEVELS - drop_threshold(0.1)) / LEVELS
    np.testing.assert_allclose(out[out != 0], 1.0 / keep, rtol=1e-6)
    assert abs(out.mean() - 1.0) < 0.005  # inverted dropout keeps the expectation


def test_same_key_same_mask_other_key_other_mask():
    x = jnp.ones((64, 64))
    np.testing.assert_array_equal(apply(0.5, x, key=1), apply(0.5, x, key=1))
    assert np.any(np.asarray(apply(0.5, x, key=1)) != np.asarray(apply(0.5, x, key=2)))


def test_deterministic_rate_zero_and_rate_one():
    x = jnp.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(apply(0.3, x, deterministic=True), x)
    np.testing.assert_array_equal(apply(0.0, x), x)
    np.testing.assert_array_equal(apply(1.0, x), jnp.zeros_like(x))


def test_keeps_the_input_dtype():
    x = jnp.ones((8, 8), jnp.bfloat16)
    assert dropout(jax.random.key(0), x, 0.1).dtype == jnp.bfloat16


def test_rate_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\]"):
        apply(1.5, jnp.ones((2, 2)))


def test_gradient_flows_through_kept_elements_only():
    x = jnp.ones((32, 32))
    key = jax.random.key(3)
    grad = jax.grad(lambda x: dropout(key, x, 0.25).sum())(x)
    out = dropout(key, x, 0.25)
    np.testing.assert_array_equal(np.asarray(grad) == 0, np.asarray(out) == 0)


def test_mask_words_look_independent_across_neighbours_keys_and_bits():
    from tlx.models.dropout import keep_mask, random_words

    key = jax.random.key(7)
    mask = np.asarray(keep_mask(key, (1 << 20,), 0.5)).astype(np.float64)
    # Neighbouring elements (two halves of one word, and adjacent words) are uncorrelated.
    for lag in (1, 2, 3):
        assert abs(np.corrcoef(mask[:-lag], mask[lag:])[0, 1]) < 0.01
    # A folded-in key (what flax's make_rng gives the next layer or step) draws another mask.
    other = np.asarray(keep_mask(jax.random.fold_in(key, 1), (1 << 20,), 0.5)).astype(np.float64)
    assert abs(np.corrcoef(mask, other)[0, 1]) < 0.01
    # Every bit of the words is set half of the time: no weak bit positions.
    words = np.asarray(random_words(key, 1 << 18))
    bits = (words[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    assert np.all(np.abs(bits.mean(0) - 0.5) < 0.005)  # 2.6e5 draws: standard error 1e-3


def test_refuses_a_mask_larger_than_its_counter_range():
    from tlx.models.dropout import MAX_ELEMENTS, keep_mask

    with pytest.raises(ValueError, match="exceeds the mask counter's range"):
        jax.eval_shape(lambda k: keep_mask(k, (MAX_ELEMENTS + 2,), 0.1), jax.random.key(0))
