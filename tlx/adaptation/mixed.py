"""Methods that train on labelled source and unlabelled target batches together (pseudo_label,
coral): one stream of mixed batches, and a forward that runs the model once over both.

A mixed batch holds the source batch of a step ("image", "label", "weight"), the target images of
the same step ("target_image", and for pseudo-labels a second, strongly augmented view of the
same images, "target_image_strong") and the step itself per source row ("adapt_step", for the
loss's ramp). Each key keeps its own rows, so micro-batches and devices split every key alike.
The forward concatenates the images (BatchNorm in training sees source and target together, as
TLlib's implementations do) and hands the task a dict of the parts' logits (and features).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from tlx.types import ForwardFn

PARTS = ("image", "target_image", "target_image_strong")
OUTPUT_NAMES = {"image": "source", "target_image": "target", "target_image_strong": "strong"}


def pooled(features):
    """[N, ...spatial, C] activations -> [N, C] (their spatial mean)."""
    features = features.astype(jnp.float32)
    return features.mean(axis=tuple(range(1, features.ndim - 1))) if features.ndim > 2 else features


def mixed_forward(forward: ForwardFn, with_features: bool) -> ForwardFn:
    """The model's forward over a mixed batch -> ({"source", "target"[, "strong"]} logits and,
    with features, "source_features" / "target_features"), model state. A batch without target
    images (an evaluation) passes straight through (features dropped)."""

    def run(params, model_state, batch, rng, train):
        if "target_image" not in batch:
            out, model_state = forward(params, model_state, batch, rng, train)
            return (out[0] if with_features else out), model_state
        parts = [name for name in PARTS if name in batch]
        sizes = [batch[name].shape[0] for name in parts]
        images = jnp.concatenate([batch[name] for name in parts])
        out, model_state = forward(params, model_state, {"image": images}, rng, train)
        logits, features = out if with_features else (out, None)
        cuts = np.cumsum(sizes)[:-1].tolist()
        outputs = {OUTPUT_NAMES[n]: x for n, x in zip(parts, jnp.split(logits, cuts))}
        if with_features:
            split = jnp.split(pooled(features), cuts)
            outputs["source_features"], outputs["target_features"] = split[0], split[1]
        return outputs, model_state

    return run


class MixedBatches:
    """step -> the mixed batch of that step (random access, as the trainer reads batches)."""

    def __init__(self, target, strong=None):
        self.target, self.strong = target, strong  # random-access target streams

    def __call__(self, step: int, batch: dict) -> dict:
        rows = len(batch["label"])
        mixed = {
            **batch,
            "weight": batch.get("weight", np.ones(rows, np.float32)),
            "adapt_step": np.full(rows, step, np.int32),
            "target_image": self.target[step]["image"],
        }
        if self.strong is not None:
            mixed["target_image_strong"] = self.strong[step]["image"]
        return mixed
