"""Classification: softmax cross-entropy against integer labels, accuracy, class probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tlx.tasks.base import batch_weights


class Classification:
    name = "classification"
    sum_keys = ("loss_sum", "correct_sum", "weight_sum")
    metric_names = ("accuracy", "loss")

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

    def predict_on_host(self, outputs: Any) -> np.ndarray:
        logits = np.asarray(outputs, np.float64)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        return probs

    def predictions(
        self, predicted: np.ndarray, label_names: Sequence[str], top_k: int
    ) -> list[dict[str, Any]]:
        """Per input: its top-k labels, class ids and probabilities, most likely first."""
        rows = []
        for p in predicted:
            best = [int(i) for i in p.argsort()[::-1][: min(top_k, len(label_names))]]
            rows.append(
                {
                    "labels": [label_names[i] for i in best],
                    "class_ids": best,
                    "probabilities": [float(p[i]) for i in best],
                }
            )
        return rows

    def format_prediction(self, prediction: Mapping[str, Any]) -> str:
        """``label probability, ...``, most likely first."""
        pairs = zip(prediction["labels"], prediction["probabilities"])
        return ", ".join(f"{name} {p:.3f}" for name, p in pairs)
