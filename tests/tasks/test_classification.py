"""The classification task: sums that add up across batches, its summary, its predictions and how
they print."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from tlx.errors import ConfigError
from tlx.metrics import add_sums
from tlx.tasks import Classification, get_task


def test_sums_weigh_out_padding_rows_and_add_up_across_batches():
    task = Classification()
    logits = jnp.array([[2.0, 0.0], [0.0, 3.0], [5.0, 0.0]])
    batch = {"label": jnp.array([0, 0, 1]), "weight": jnp.array([1.0, 1.0, 0.0])}  # row 3: padding
    sums = {k: float(v) for k, v in task.batch_sums(logits, batch).items()}
    expected_loss = -math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(1 / (1 + math.exp(3)))
    assert sums["weight_sum"] == 2 and sums["correct_sum"] == 1
    assert sums["loss_sum"] == pytest.approx(expected_loss, rel=1e-6)
    # two halves summed give the whole batch's summary
    halves = [
        task.batch_sums(logits[:1], {k: v[:1] for k, v in batch.items()}),
        task.batch_sums(logits[1:], {k: v[1:] for k, v in batch.items()}),
    ]
    total = add_sums(add_sums(None, halves[0]), halves[1])
    assert task.summarize(total) == pytest.approx(task.summarize(sums))
    assert task.summarize(sums) == {
        "accuracy": 0.5,
        "loss": pytest.approx(expected_loss / 2),
        "examples": 2,
    }
    assert task.headline(task.summarize(sums)).startswith("accuracy 0.5000 loss ")


def test_rows_without_weights_all_count():
    sums = Classification().batch_sums(jnp.zeros((4, 3)), {"label": jnp.zeros(4, jnp.int32)})
    assert float(sums["weight_sum"]) == 4


def test_predictions_are_probabilities():
    probs = np.asarray(Classification().predict(jnp.array([[1.0, 2.0, 3.0]], jnp.bfloat16)))
    assert probs.dtype == np.float32 and probs.sum() == pytest.approx(1.0) and probs.argmax() == 2


def test_predictions_are_the_top_k_labels_most_likely_first():
    task = Classification()
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])
    rows = task.predictions(probs, ["ant", "bee", "cat"], top_k=2)
    assert rows == [
        {"labels": ["bee", "cat"], "class_ids": [1, 2], "probabilities": [0.7, 0.2]},
        {"labels": ["ant", "cat"], "class_ids": [0, 2], "probabilities": [0.5, 0.25]},
    ]
    assert all(type(i) is int for row in rows for i in row["class_ids"])  # JSON-ready
    assert all(type(p) is float for row in rows for p in row["probabilities"])
    assert [len(r["labels"]) for r in task.predictions(probs, ["ant", "bee", "cat"], 10)] == [3, 3]
    # tlx.predict's own keys ("input", "step", ...) may ride along; the line reads only the task's
    assert task.format_prediction({**rows[0], "input": "x", "step": 4}) == "bee 0.700, cat 0.200"


def test_host_predictions_are_float64_probabilities_matching_the_compiled_ones():
    task = Classification()
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]], np.float32)
    host = task.predict_on_host(logits)
    assert host.dtype == np.float64 and host.sum(-1) == pytest.approx([1.0, 1.0])
    np.testing.assert_allclose(host, np.asarray(task.predict(jnp.asarray(logits))), atol=1e-6)


def test_an_unknown_task_is_a_config_error():
    assert isinstance(get_task("classification"), Classification)
    with pytest.raises(ConfigError, match="config.task='no_such_task'"):
        get_task("no_such_task")
