"""AdaBN: every BatchNorm layer's statistics re-estimated on a set of (target) images.

One pass over the set in batches. Each BatchNorm layer normalises with its batch's statistics (as
in training) while its input's per-channel count, mean and sum of squared deviations are taken,
padding rows (weight 0) left out; the batches are combined exactly on the host in float64 (Chan
et al.'s pairwise update), so a layer's mean and (biased, as flax's) variance are those of its
inputs over the whole set. The first BatchNorm layer's statistics are therefore exact; a deeper
layer's inputs depend on how the layers below normalised, which in this pass is with batch
statistics, the usual AdaBN estimate (with one batch holding the whole set it is exact at every
layer: the tests check both).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tlx.tree import flatten, unflatten


def batch_moments_fn(module: nn.Module):
    """moments(params, model_state, images, weight) -> {BatchNorm path: (count, mean, m2)} for
    one batch, per channel, jit-compiled."""

    def moments(params, model_state, images, weight):
        captured = {}

        def intercept(next_fun, args, kwargs, context):
            if not (isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__"):
                return next_fun(*args, **kwargs)
            x = args[0].astype(jnp.float32)
            rows = weight.reshape((-1,) + (1,) * (x.ndim - 1))
            mask = jnp.broadcast_to(rows > 0, x.shape)
            axes = tuple(range(x.ndim - 1))
            count = jnp.sum(jnp.broadcast_to(rows, x.shape), axes)
            mean = jnp.sum(x * rows, axes) / jnp.maximum(count, 1.0)
            m2 = jnp.sum(rows * (x - mean) ** 2, axes)
            captured["/".join(context.module.path)] = (count, mean, m2)
            kwargs = {**kwargs, "use_running_average": False, "mask": mask}
            return next_fun(*args, **kwargs)

        variables = {"params": params, **model_state}
        with nn.intercept_methods(intercept):
            module.apply(variables, images, train=False, mutable=["batch_stats"])
        return captured

    return jax.jit(moments)


def combine(a: tuple, b: tuple) -> tuple:
    """Two (count, mean, m2) summaries of disjoint sets -> the summary of their union."""
    (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = a, b
    n = n_a + n_b
    delta = mean_b - mean_a
    share = np.divide(n_b, n, out=np.zeros_like(n), where=n > 0)
    return n, mean_a + delta * share, m2_a + m2_b + delta**2 * n_a * share


def reestimate_batchnorm(
    module: nn.Module, params: Mapping, model_state: Mapping, batches: Iterable[Mapping]
) -> dict:
    """`model_state` with every BatchNorm layer's mean and var measured on `batches` (dicts with
    "image" and optionally "weight", 0 for padding rows); other state is returned unchanged."""
    stats = flatten(model_state.get("batch_stats", {}))
    if not stats:
        raise ValueError("the model has no BatchNorm statistics to re-estimate")
    moments = batch_moments_fn(module)
    totals: dict[str, tuple] = {}
    for batch in batches:
        images = np.asarray(batch["image"])
        weight = np.asarray(batch.get("weight", np.ones(len(images), np.float32)), np.float32)
        found = jax.device_get(moments(params, model_state, images, weight))
        for path, summary in found.items():
            summary = tuple(np.asarray(v, np.float64) for v in summary)
            totals[path] = combine(totals[path], summary) if path in totals else summary
    missing = sorted({p.rsplit("/", 1)[0] for p in stats} - set(totals))
    if missing or not totals:
        raise ValueError(f"BatchNorm layers {missing} were not reached by the statistics pass.")
    new = dict(stats)
    for path, (count, mean, m2) in totals.items():
        if not np.all(count > 0):
            raise ValueError(f"the statistics pass saw no example for BatchNorm {path!r}")
        new[f"{path}/mean"] = mean.astype(stats[f"{path}/mean"].dtype)
        new[f"{path}/var"] = (m2 / count).astype(stats[f"{path}/var"].dtype)
    return {**model_state, "batch_stats": unflatten(new)}
