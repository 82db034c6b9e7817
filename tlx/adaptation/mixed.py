"""Methods that train on labelled source and unlabelled target batches together (pseudo_label,
coral, dann): one stream of mixed batches, and a forward that runs the model once over both.

A mixed batch holds the source batch of a step (its inputs, "label", "weight"), the target inputs
of the same step under "target_<key>" (and for pseudo-labels a second view of the same examples,
"target_<key>_strong") and the step itself per source row ("adapt_step", for the loss's ramp).
The inputs are the model's: "image" for image classifiers, "input_ids", "attention_mask" and
"token_type_ids" for text ones (padded to one length across the parts). Each key keeps its own
rows, so micro-batches and devices split every key alike. The forward concatenates the parts
(BatchNorm in training sees source and target together, as TLlib's implementations do) and hands
the task a dict of the parts' logits (and features).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from tlx.types import ForwardFn

IMAGE_INPUTS = ("image",)
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# (the task's name for a part's outputs, the batch key of its input `{}`)
PARTS = (("source", "{}"), ("target", "target_{}"), ("strong", "target_{}_strong"))


def input_keys(bundle) -> tuple[str, ...]:
    """The batch keys a model reads: token arrays for a text model, else the image."""
    return TEXT_INPUTS if bundle.tokenizer is not None else IMAGE_INPUTS


def example_batch(bundle) -> dict:
    """A one-row input batch of the model's kind (for tracing shapes)."""
    if bundle.tokenizer is not None:
        ids = jnp.zeros((1, 8), jnp.int32)
        return {"input_ids": ids, "attention_mask": jnp.ones_like(ids), "token_type_ids": ids}
    size = bundle.preprocessing.image_size
    return {"image": jnp.zeros((1, size, size, 3), jnp.float32)}


def pooled(features):
    """[N, ...spatial, C] activations -> [N, C] (their spatial mean)."""
    features = features.astype(jnp.float32)
    return features.mean(axis=tuple(range(1, features.ndim - 1))) if features.ndim > 2 else features


def mixed_forward(forward: ForwardFn, with_features: bool, keys=IMAGE_INPUTS) -> ForwardFn:
    """The model's forward over a mixed batch -> ({"source", "target"[, "strong"]} logits and,
    with features, "source_features" / "target_features"), model state. A batch without target
    inputs (an evaluation) passes straight through (features dropped)."""

    def run(params, model_state, batch, rng, train):
        if f"target_{keys[0]}" not in batch:
            out, model_state = forward(params, model_state, batch, rng, train)
            return (out[0] if with_features else out), model_state
        parts = [(name, pattern) for name, pattern in PARTS if pattern.format(keys[0]) in batch]
        sizes = [batch[pattern.format(keys[0])].shape[0] for _, pattern in parts]
        inputs = {
            key: jnp.concatenate([batch[pattern.format(key)] for _, pattern in parts])
            for key in keys
        }
        out, model_state = forward(params, model_state, inputs, rng, train)
        logits, features = out if with_features else (out, None)
        cuts = np.cumsum(sizes)[:-1].tolist()
        outputs = {name: x for (name, _), x in zip(parts, jnp.split(logits, cuts))}
        if with_features:
            split = jnp.split(pooled(features), cuts)
            outputs["source_features"], outputs["target_features"] = split[0], split[1]
        return outputs, model_state

    return run


def pad_to_common_length(batch: dict, keys) -> dict:
    """Token arrays [B, L] of every part padded (zeros: masked out) to the parts' longest L, so
    that the forward can concatenate them; images pass unchanged."""
    names = [pattern.format(key) for key in keys for _, pattern in PARTS]
    names = [n for n in names if n in batch and np.ndim(batch[n]) == 2]
    if not names:
        return batch
    length = max(batch[n].shape[1] for n in names)
    padded = {n: np.pad(batch[n], ((0, 0), (0, length - batch[n].shape[1]))) for n in names}
    return {**batch, **padded}


class MixedBatches:
    """step -> the mixed batch of that step (random access, as the trainer reads batches)."""

    def __init__(self, target, strong=None, keys=IMAGE_INPUTS):
        self.target, self.strong = target, strong  # random-access target streams
        self.keys = tuple(keys)

    def __call__(self, step: int, batch: dict) -> dict:
        rows = len(batch["label"])
        mixed = {
            **batch,
            "weight": batch.get("weight", np.ones(rows, np.float32)),
            "adapt_step": np.full(rows, step, np.int32),
        }
        target = self.target[step]
        strong = None
        if self.strong is not None:  # text: the same stream (read once), under other dropout
            strong = target if self.strong is self.target else self.strong[step]
        for key in self.keys:
            mixed[f"target_{key}"] = target[key]
            if strong is not None:
                mixed[f"target_{key}_strong"] = strong[key]
        return pad_to_common_length(mixed, self.keys)
