"""The adaptation task: entropy on unlabelled rows, classification on labelled ones."""

import jax
import jax.numpy as jnp
import numpy as np

from tlx.adaptation.dann import ganin_coefficient, gradient_reversal
from tlx.tasks import Classification
from tlx.tasks.adaptation import (
    Adaptation,
    coral_loss,
    domain_loss,
    prediction_entropy,
    pseudo_label_loss,
)


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


def numpy_coral(source, target):
    d = source.shape[1]
    diff = np.cov(source, rowvar=False) - np.cov(target, rowvar=False)
    return (diff**2).sum() / (4 * d * d)


def test_coral_matches_the_papers_formula_in_numpy():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(16, 5)), rng.normal(size=(12, 5)) * 2.0 + 1.0
    got = float(coral_loss(jnp.asarray(source, jnp.float32), jnp.asarray(target, jnp.float32)))
    np.testing.assert_allclose(got, numpy_coral(source, target), rtol=1e-5)
    assert float(coral_loss(jnp.asarray(source), jnp.asarray(source + 3.0))) < 1e-10  # shift-free


def test_pseudo_labels_count_confident_rows_and_stop_the_weak_views_gradient():
    weak = jnp.asarray([[4.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 6.0]])  # rows 0, 2 confident
    strong = jnp.asarray([[1.0, 2.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    loss, confident = pseudo_label_loss(weak, strong, threshold=0.9)
    assert float(confident) == 2
    expected = numpy_ce(np.asarray(strong), np.array([0, 0, 2]))
    np.testing.assert_allclose(float(loss), (expected[0] + expected[2]) / 3, rtol=1e-6)
    grad_weak = jax.grad(lambda w: pseudo_label_loss(w, strong, 0.9)[0])(weak)
    assert float(jnp.abs(grad_weak).max()) == 0.0  # the pseudo-label is a constant


def numpy_ce(logits, labels):
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


def test_a_mixed_batch_costs_source_ce_plus_the_ramped_term():
    rng = np.random.default_rng(1)
    outputs = {
        "source": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
        "target": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32),
        "source_features": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32),
        "target_features": jnp.asarray(rng.normal(size=(6, 5)) * 3, jnp.float32),
    }
    batch = {
        "label": jnp.asarray([0, 1, 2, 0]),
        "weight": jnp.ones(4),
        "adapt_step": jnp.full((4,), 5, jnp.int32),
    }
    task = Adaptation(weight=2.0, method="coral", ramp_steps=20)
    sums = task.batch_sums(outputs, batch)
    ce = numpy_ce(np.asarray(outputs["source"]), np.array([0, 1, 2, 0])).mean()
    coral = numpy_coral(
        np.asarray(outputs["source_features"]), np.asarray(outputs["target_features"])
    )
    loss = float(sums["loss_sum"]) / float(sums["weight_sum"])
    np.testing.assert_allclose(loss, ce + 2.0 * (5 / 20) * coral, rtol=1e-5)


def test_gradient_reversal_negates_and_scales_the_gradient():
    x = jnp.asarray([1.0, -2.0, 3.0])
    w = jnp.asarray([0.5, 2.0, -1.0])
    coefficient = jnp.float32(0.3)
    forward = gradient_reversal(x, coefficient)
    np.testing.assert_array_equal(forward, x)  # identity forward
    gx, gc = jax.grad(lambda x, c: jnp.sum(gradient_reversal(x, c) * w), argnums=(0, 1))(
        x, coefficient
    )
    np.testing.assert_allclose(gx, -0.3 * w, rtol=1e-6)
    assert float(gc) == 0.0  # the schedule's coefficient is not trained
    assert float(ganin_coefficient(jnp.float32(0.0))) == 0.0
    np.testing.assert_allclose(float(ganin_coefficient(jnp.float32(1.0))), 0.99991, atol=1e-5)


def test_domain_loss_is_the_two_domains_mean_bce():
    s, t = np.array([2.0, -1.0, 0.5]), np.array([0.0, 3.0])
    bce = lambda z, y: np.mean(np.log1p(np.exp(-z)) if y else np.log1p(np.exp(z)))
    got = float(domain_loss(jnp.asarray(s), jnp.asarray(t)))
    np.testing.assert_allclose(got, 0.5 * (bce(s, 1) + bce(t, 0)), rtol=1e-6)


def test_balanced_accuracy_is_sklearns_over_batches_with_padding():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    labels = rng.choice(3, 50, p=[0.8, 0.15, 0.05])  # imbalanced, as the airline tweets
    logits = rng.standard_normal((50, 3)) + 2.0 * np.eye(3)[labels] * (rng.random(50) < 0.6)[:, None]  # fmt: skip
    task = Adaptation(method="coral", num_classes=3)
    total = {}
    for start in range(0, 50, 16):  # uneven batches; the last padded with weight-0 rows
        rows = slice(start, start + 16)
        batch_logits, batch_labels = logits[rows], labels[rows]
        weight = np.ones(len(batch_labels), np.float32)
        pad = 16 - len(batch_labels)
        batch = {
            "label": jnp.asarray(np.pad(batch_labels, (0, pad))),
            "weight": jnp.asarray(np.pad(weight, (0, pad))),
        }
        sums = task.batch_sums(jnp.asarray(np.pad(batch_logits, ((0, pad), (0, 0)))), batch)
        total = {k: total.get(k, 0.0) + float(v) for k, v in sums.items()}
    result = task.summarize(total)
    expected = balanced_accuracy_score(labels, logits.argmax(-1))
    np.testing.assert_allclose(result["balanced_accuracy"], expected, rtol=1e-6)
    assert result["accuracy"] != result["balanced_accuracy"]  # the imbalance shows
    assert "balanced_accuracy" in task.metric_names
