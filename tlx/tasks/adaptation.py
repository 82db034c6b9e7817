"""Classification adapted to an unlabelled target (``config.adapt``, tlx.adaptation).

Evaluation batches are labelled and scored as classification, plus the mean prediction entropy
(an unsupervised signal that needs no label). What a train batch costs depends on the method:

    tent          unlabelled target images alone (no "label" column): adapt.weight x their mean
                  prediction entropy, ``H(p) = -sum_c p_c log p_c``
    pseudo_label  a mixed batch (tlx.adaptation.mixed): the source rows' cross-entropy, plus
                  weight x FixMatch's loss: the cross-entropy of the strong view against the weak
                  view's argmax, counted where the weak view's confidence reaches adapt.threshold,
                  averaged over all target rows (Sohn et al. 2020)
    coral         a mixed batch with features: the source rows' cross-entropy, plus weight x
                  Deep CORAL's ``||C_s - C_t||_F^2 / (4 d^2)`` between the source and target
                  features' covariances (Sun and Saenko 2016)
    dann          a mixed batch with domain logits (tlx.adaptation.dann): the source rows'
                  cross-entropy, plus weight x the domain classifier's binary cross-entropy; the
                  gradient reversal in the forward turns it against the features

The unlabelled term's weight rises linearly over adapt.ramp_steps (0: full from the start). A
target batch never holds target labels (tlx.adaptation.data drops them), so none can reach a step.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from tlx.tasks.base import batch_weights
from tlx.tasks.classification import Classification


def prediction_entropy(logits: jax.Array) -> jax.Array:
    """Per row, the entropy (nats) of softmax(logits)."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    return -jnp.sum(jnp.exp(log_p) * log_p, -1)


def covariance(features: jax.Array) -> jax.Array:
    centred = features - features.mean(0, keepdims=True)
    return centred.T @ centred / max(features.shape[0] - 1, 1)


def coral_loss(source: jax.Array, target: jax.Array) -> jax.Array:
    """Deep CORAL: squared Frobenius distance of the two [N, d] feature covariances / 4d^2."""
    d = source.shape[-1]
    diff = covariance(source.astype(jnp.float32)) - covariance(target.astype(jnp.float32))
    return jnp.sum(diff**2) / (4.0 * d * d)


def domain_loss(source_logits: jax.Array, target_logits: jax.Array) -> jax.Array:
    """DANN's domain classifier loss: binary cross-entropy, source = 1 and target = 0, the two
    domains' means averaged (as TLlib's DomainAdversarialLoss)."""
    source = optax.sigmoid_binary_cross_entropy(source_logits.astype(jnp.float32), 1.0)
    target = optax.sigmoid_binary_cross_entropy(target_logits.astype(jnp.float32), 0.0)
    return 0.5 * (jnp.mean(source) + jnp.mean(target))


def pseudo_label_loss(weak: jax.Array, strong: jax.Array, threshold: float):
    """(FixMatch's mean loss over all target rows, how many rows passed the threshold)."""
    probs = jax.nn.softmax(jax.lax.stop_gradient(weak).astype(jnp.float32), -1)
    confident = (jnp.max(probs, -1) >= threshold).astype(jnp.float32)
    labels = jnp.argmax(probs, -1)
    losses = optax.softmax_cross_entropy_with_integer_labels(strong.astype(jnp.float32), labels)
    return jnp.mean(losses * confident), jnp.sum(confident)


def class_sums(logits: jax.Array, labels: jax.Array, weights: jax.Array, num_classes: int):
    """Per class c: the weighted count of rows labelled c and of those among them predicted
    right (for the balanced accuracy, the mean of the per-class recalls)."""
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32) * weights
    sums = {}
    for c in range(num_classes):
        of_class = (labels == c).astype(jnp.float32)
        sums[f"class_{c}_sum"] = jnp.sum(of_class * weights)
        sums[f"class_{c}_correct_sum"] = jnp.sum(of_class * correct)
    return sums


class Adaptation(Classification):
    """Scored as a classifier, plus the balanced accuracy (a shifted target's classes are often
    imbalanced: 80% of the airline tweets are negative) and the prediction entropy."""

    name = "classification"  # the adaptation is how it trains
    metric_names = ("accuracy", "balanced_accuracy", "loss", "entropy")

    def __init__(
        self,
        weight: float = 1.0,
        method: str = "tent",
        threshold: float = 0.95,
        ramp_steps: int = 0,
        num_classes: int = 0,
    ):
        self.weight, self.method = float(weight), method
        self.threshold, self.ramp_steps = float(threshold), int(ramp_steps)
        self.num_classes = int(num_classes)
        per_class = [f"class_{c}_{k}sum" for c in range(self.num_classes) for k in ("", "correct_")]
        self.sum_keys = (
            "loss_sum",
            "correct_sum",
            "labelled_sum",
            "entropy_sum",
            "unlabelled_loss_sum",
            "confident_sum",
            "weight_sum",
            *per_class,
        )

    def batch_sums(self, outputs, batch: Mapping) -> dict[str, jax.Array]:
        if isinstance(outputs, Mapping):  # a mixed source + target batch
            return self._mixed_sums(outputs, batch)
        weights = batch_weights(batch)
        entropy = jnp.sum(prediction_entropy(outputs) * weights)
        zero = jnp.zeros((), jnp.float32)
        if "label" not in batch:  # unlabelled target rows: entropy minimisation (TENT)
            return {
                **{k: zero for k in self.sum_keys if k.startswith("class_")},
                "loss_sum": self.weight * entropy,
                "correct_sum": zero,
                "labelled_sum": zero,
                "entropy_sum": entropy,
                "unlabelled_loss_sum": entropy,
                "confident_sum": zero,
                "weight_sum": jnp.sum(weights),
            }
        sums = super().batch_sums(outputs, batch)
        return {
            **sums,
            **class_sums(outputs, batch["label"], weights, self.num_classes),
            "labelled_sum": sums["weight_sum"],
            "entropy_sum": entropy,
            "unlabelled_loss_sum": zero,
            "confident_sum": zero,
        }

    def _mixed_sums(self, outputs: Mapping, batch: Mapping) -> dict[str, jax.Array]:
        sums = super().batch_sums(outputs["source"], batch)
        weight_sum = sums["weight_sum"]
        confident = jnp.zeros((), jnp.float32)
        if self.method == "pseudo_label":
            unlabelled, confident = pseudo_label_loss(
                outputs["target"], outputs["strong"], self.threshold
            )
        elif self.method == "dann":
            unlabelled = domain_loss(outputs["source_domain"], outputs["target_domain"])
        else:  # coral
            unlabelled = coral_loss(outputs["source_features"], outputs["target_features"])
        ramp = 1.0
        if self.ramp_steps:
            step = batch["adapt_step"][0].astype(jnp.float32)
            ramp = jnp.minimum(1.0, step / self.ramp_steps)
        # Sums, as every task's: the unlabelled mean counts once per source row, so that the
        # train step's division by the source weight leaves mean CE + weight x ramp x term.
        return {
            **class_sums(outputs["source"], batch["label"], batch_weights(batch), self.num_classes),
            "loss_sum": sums["loss_sum"] + self.weight * ramp * unlabelled * weight_sum,
            "correct_sum": sums["correct_sum"],
            "labelled_sum": weight_sum,
            "entropy_sum": jnp.mean(prediction_entropy(outputs["target"])) * weight_sum,
            "unlabelled_loss_sum": unlabelled * weight_sum,
            "confident_sum": confident,
            "weight_sum": weight_sum,
        }

    def summarize(self, sums: Mapping[str, float]) -> dict[str, float]:
        weight = max(float(sums["weight_sum"]), 1e-12)
        labelled = float(sums["labelled_sum"])
        result = {}
        if labelled > 0:
            result["accuracy"] = float(sums["correct_sum"]) / labelled
            recalls = [
                float(sums[f"class_{c}_correct_sum"]) / float(sums[f"class_{c}_sum"])
                for c in range(self.num_classes)
                if float(sums.get(f"class_{c}_sum", 0.0)) > 0
            ]
            if recalls:  # the classes present in the split, each counted equally
                result["balanced_accuracy"] = sum(recalls) / len(recalls)
        result["loss"] = float(sums["loss_sum"]) / weight
        result["entropy"] = float(sums["entropy_sum"]) / weight
        if float(sums.get("unlabelled_loss_sum", 0.0)):
            result["unlabelled_loss"] = float(sums["unlabelled_loss_sum"]) / weight
        if float(sums.get("confident_sum", 0.0)):
            result["confident"] = int(round(float(sums["confident_sum"])))
        result["examples"] = int(round(weight))
        return result

    def headline(self, result: Mapping[str, float]) -> str:
        accuracy = f"accuracy {result['accuracy']:.4f} " if "accuracy" in result else ""
        return f"{accuracy}loss {result['loss']:.4f} entropy {result['entropy']:.4f}"
