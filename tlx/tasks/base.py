"""The contract every task meets (see :class:`Task`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np


class Task(Protocol):
    """What a run optimises and reports.

    Sums, not means: a batch's sums add up exactly over micro-batches, devices and evaluation
    batches, and are divided once at the end. Every task's sums include ``loss_sum`` (the summed,
    weighted per-example loss; the train step divides it by the global ``weight_sum``) and
    ``weight_sum`` (how many real examples the batch holds: padding rows weigh 0).
    """

    name: str
    sum_keys: Sequence[str]  # the keys batch_sums returns
    # The values summarize reports that a run may select its checkpoint by (config.selection).
    metric_names: Sequence[str]

    def batch_sums(self, outputs: jax.Array, batch: Mapping) -> dict[str, jax.Array]:
        """Weighted sums of a batch from the model's outputs (inside jit)."""
        ...

    def summarize(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Summed metrics of an evaluation (on the host) -> the reported values, the first the
        headline metric, then ``loss`` and ``examples``."""
        ...

    def headline(self, result: Mapping[str, float]) -> str:
        """A summary in a few words, for the progress bar."""
        ...

    # Prediction (tlx.predict): `predict` runs in the compiled step (or `predict_on_host` for a
    # model run outside it), `predictions` turns its rows into one JSON-ready dict per input and
    # `format_prediction` into the text printed before the input. tlx.predict adds the "input"
    # first and its own bookkeeping (checkpoint "step", text truncation) after the task's fields.

    def predict(self, outputs: jax.Array) -> jax.Array:
        """What prediction computes per example from the model's outputs (inside jit)."""
        ...

    def predict_on_host(self, outputs: Any) -> np.ndarray:
        """`predict` for outputs computed outside the compiled steps (a catalog model run with its
        original head), in float64 numpy on the host."""
        ...

    def predictions(
        self, predicted: np.ndarray, label_names: Sequence[str], top_k: int
    ) -> list[dict[str, Any]]:
        """Per input, in order, the task's JSON-ready fields from `predict`'s rows (numpy, one row
        per input). `label_names` names the model's output classes; `top_k` is how many
        candidates to report per input (``--top_k``)."""
        ...

    def format_prediction(self, prediction: Mapping[str, Any]) -> str:
        """One input's prediction (a dict from `predictions`, possibly with tlx.predict's own keys
        added) as one line of text, without the input."""
        ...


def batch_weights(batch: Mapping) -> jax.Array:
    """Each row's weight: ``batch["weight"]`` (0 for padding rows) or 1 for every row."""
    if "weight" in batch:
        return batch["weight"].astype(jnp.float32)
    rows = len(jax.tree_util.tree_leaves(batch)[0])
    return jnp.ones((rows,), jnp.float32)
