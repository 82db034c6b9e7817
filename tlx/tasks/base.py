"""The contract every task meets (see :class:`Task`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp


class Task(Protocol):
    """What a run optimises and reports.

    Sums, not means: a batch's sums add up exactly over micro-batches, devices and evaluation
    batches, and are divided once at the end. Every task's sums include ``loss_sum`` (the summed,
    weighted per-example loss; the train step divides it by the global ``weight_sum``) and
    ``weight_sum`` (how many real examples the batch holds: padding rows weigh 0).
    """

    name: str
    sum_keys: Sequence[str]  # the keys batch_sums returns

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

    def predict(self, outputs: jax.Array) -> jax.Array:
        """What prediction returns per example (inside jit)."""
        ...


def batch_weights(batch: Mapping) -> jax.Array:
    """Each row's weight: ``batch["weight"]`` (0 for padding rows) or 1 for every row."""
    if "weight" in batch:
        return batch["weight"].astype(jnp.float32)
    rows = len(jax.tree_util.tree_leaves(batch)[0])
    return jnp.ones((rows,), jnp.float32)
