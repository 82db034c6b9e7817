"""The headless output of every image model (`num_classes=None`, Keras' include_top=False)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

POOLINGS = ("avg", "max", None)  # None: the last NHWC feature map itself


def check_pooling(pooling) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def global_pool(x: jax.Array, pooling: str | None) -> jax.Array:
    """[N, H, W, C] -> [N, C] by mean or max over space, or x unchanged for pooling=None."""
    check_pooling(pooling)
    if pooling == "avg":
        return jnp.mean(x, axis=(1, 2))
    if pooling == "max":
        return jnp.max(x, axis=(1, 2))
    return x
