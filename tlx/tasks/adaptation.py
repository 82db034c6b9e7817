"""Classification adapted to an unlabelled target (``config.adapt``, tlx.adaptation).

Evaluation batches are labelled and scored as classification, plus the mean prediction entropy
(an unsupervised signal that needs no label). Train batches of an adaptation that trains ("tent")
hold unlabelled target images only: their loss is `adapt.weight` x the mean entropy of the
model's predictions, ``H(p) = -sum_c p_c log p_c``, which TENT minimises. A batch without a
"label" column is unlabelled by construction (tlx.adaptation.data drops it), so no target label
can reach a train step.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from tlx.tasks.base import batch_weights
from tlx.tasks.classification import Classification


def prediction_entropy(logits: jax.Array) -> jax.Array:
    """Per row, the entropy (nats) of softmax(logits)."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    return -jnp.sum(jnp.exp(log_p) * log_p, -1)


class Adaptation(Classification):
    name = "classification"  # scored as a classifier; the adaptation is how it trains
    sum_keys = ("loss_sum", "correct_sum", "labelled_sum", "entropy_sum", "weight_sum")
    metric_names = ("accuracy", "loss", "entropy")

    def __init__(self, weight: float = 1.0):
        self.weight = float(weight)

    def batch_sums(self, outputs: jax.Array, batch: Mapping) -> dict[str, jax.Array]:
        weights = batch_weights(batch)
        entropy = jnp.sum(prediction_entropy(outputs) * weights)
        if "label" not in batch:  # unlabelled target rows: entropy minimisation
            zero = jnp.zeros((), jnp.float32)
            return {
                "loss_sum": self.weight * entropy,
                "correct_sum": zero,
                "labelled_sum": zero,
                "entropy_sum": entropy,
                "weight_sum": jnp.sum(weights),
            }
        sums = super().batch_sums(outputs, batch)
        return {**sums, "labelled_sum": sums["weight_sum"], "entropy_sum": entropy}

    def summarize(self, sums: Mapping[str, float]) -> dict[str, float]:
        weight = max(float(sums["weight_sum"]), 1e-12)
        labelled = float(sums["labelled_sum"])
        result = {}
        if labelled > 0:
            result["accuracy"] = float(sums["correct_sum"]) / labelled
        result["loss"] = float(sums["loss_sum"]) / weight
        result["entropy"] = float(sums["entropy_sum"]) / weight
        result["examples"] = int(round(weight))
        return result

    def headline(self, result: Mapping[str, float]) -> str:
        accuracy = f"accuracy {result['accuracy']:.4f} " if "accuracy" in result else ""
        return f"{accuracy}loss {result['loss']:.4f} entropy {result['entropy']:.4f}"
