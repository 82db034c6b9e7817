"""Types shared by the layers that build models (tlx.zoo) and those that run them (tlx.steps)."""

from __future__ import annotations

from collections.abc import Callable

import jax

# forward(params, model_state, batch, rng, train) -> (logits, new_model_state)
ForwardFn = Callable[..., tuple[jax.Array, dict]]
