"""The adaptation task: entropy on unlabelled rows, classification on labelled ones."""

import jax.numpy as jnp
import numpy as np

from tlx.tasks import Classification
from tlx.tasks.adaptation import Adaptation, prediction_entropy


def numpy_entropy(logits):
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return -(p * np.log(p)).sum(-1)


LOGITS = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [9.0, -9.0, 0.0], [1.0, 3.0, 2.0]])


def test_entropy_matches_numpy_and_its_bounds():
    h = np.asarray(prediction_entropy(jnp.asarray(LOGITS)))
    np.testing.assert_allclose(h, numpy_entropy(LOGITS), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h[1], np.log(3), rtol=1e-6)  # uniform: the maximum
    assert h[2] < 2e-3  # confident (p = 0.9999): near zero


def test_unlabelled_rows_are_scored_by_weighted_entropy_alone():
    task = Adaptation(weight=0.5)
    weight = np.array([1.0, 1.0, 1.0, 0.0], np.float32)  # the last row is padding
    sums = task.batch_sums(jnp.asarray(LOGITS), {"weight": jnp.asarray(weight)})
    expected = numpy_entropy(LOGITS)[:3].sum()
    np.testing.assert_allclose(float(sums["entropy_sum"]), expected, rtol=1e-6)
    np.testing.assert_allclose(float(sums["loss_sum"]), 0.5 * expected, rtol=1e-6)
    assert float(sums["labelled_sum"]) == 0 and float(sums["weight_sum"]) == 3
    result = task.summarize({k: float(v) for k, v in sums.items()})
    assert "accuracy" not in result  # nothing labelled: no accuracy to report
    np.testing.assert_allclose(result["entropy"], expected / 3, rtol=1e-6)


def test_labelled_rows_are_classification_plus_their_entropy():
    batch = {"label": jnp.asarray([0, 2, 0, 1])}
    sums = Adaptation().batch_sums(jnp.asarray(LOGITS), batch)
    plain = Classification().batch_sums(jnp.asarray(LOGITS), batch)
    for key in plain:
        np.testing.assert_allclose(float(sums[key]), float(plain[key]), rtol=1e-6)
    result = Adaptation().summarize({k: float(v) for k, v in sums.items()})
    assert result["accuracy"] == 0.75  # rows 0, 2, 3 right
    np.testing.assert_allclose(result["entropy"], numpy_entropy(LOGITS).mean(), rtol=1e-6)
