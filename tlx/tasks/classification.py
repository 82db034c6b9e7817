"""Classification: softmax cross-entropy against integer labels, accuracy, class probabilities."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from tlx.tasks.base import batch_weights


class Classification:
    name = "classification"
    sum_keys = ("loss_sum", "correct_sum", "weight_sum")

    def batch_sums(self, outputs: jax.Array, batch: Mapping) -> dict[str, jax.Array]:
        logits, labels, weights = outputs.astype(jnp.float32), batch["label"], batch_weights(batch)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        return {
            "loss_sum": jnp.sum(losses * weights),
            "correct_sum": jnp.sum(correct * weights),
            "weight_sum": jnp.sum(weights),
        }

    def summarize(self, sums: Mapping[str, float]) -> dict[str, float]:
        weight = max(float(sums["weight_sum"]), 1e-12)
        return {
            "accuracy": float(sums["correct_sum"]) / weight,
            "loss": float(sums["loss_sum"]) / weight,
            "examples": int(round(float(sums["weight_sum"]))),
        }

    def headline(self, result: Mapping[str, float]) -> str:
        return f"accuracy {result['accuracy']:.4f} loss {result['loss']:.4f}"

    def predict(self, outputs: jax.Array) -> jax.Array:
        return jax.nn.softmax(outputs.astype(jnp.float32), -1)
