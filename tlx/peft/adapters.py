"""Bottleneck adapters (Houlsby et al. 2019): a small residual MLP after chosen dense layers of a
frozen pretrained model, the model's code unchanged.

Each dense layer whose module path matches `peft.targets` (a regex, searched; by default BERT's
two output projections per layer, after attention and after the feed-forward block, Houlsby's
placement) gets `<module>/adapter_down` [out, m] and `<module>/adapter_up` [m, out] (kernel and
bias each, m = `peft.bottleneck`), and its output h becomes h + up(gelu(down(h))) before the
layer's dropout, residual and LayerNorm. `up` starts at 0, so the model starts as the pretrained
one. The adapters, every LayerNorm and the head train (tlx.peft.labels), as in the paper.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from tlx.errors import ConfigError
from tlx.tree import flatten, unflatten

ADDED_PATTERN = r"/adapter_(down|up)/(kernel|bias)$"
BERT_OUTPUTS = r"layer_\d+/(attention/output|output)/dense$"


def find_adapter_targets(param_shapes: Mapping[str, tuple], pattern: str) -> dict[str, int]:
    """{module path: its output width} of the dense layers whose path matches `pattern`."""
    pattern = pattern or BERT_OUTPUTS
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"peft.targets={pattern!r} is not a regular expression: {exc}") from exc
    dense = {p.rsplit("/", 1)[0]: s for p, s in param_shapes.items() if p.endswith("/kernel")}
    targets = {m: s[-1] for m, s in dense.items() if len(s) == 2 and compiled.search(m)}
    if not targets:
        raise ConfigError(
            f"peft.targets={pattern!r} matches no dense layer's module path (e.g. "
            f"{', '.join(sorted(dense)[:4])} ...); adapters follow dense layers."
        )
    return targets


def init_adapters(rng, targets: Mapping[str, int], bottleneck: int) -> dict[str, jax.Array]:
    """Flat {path: array}: down ~ N(0, 0.01^2) (near-identity, as Houlsby), up and biases zero."""
    added = {}
    for i, (module, width) in enumerate(sorted(targets.items())):
        down = jax.random.normal(jax.random.fold_in(rng, i), (width, bottleneck)) * 0.01
        added[f"{module}/adapter_down/kernel"] = down
        added[f"{module}/adapter_down/bias"] = jnp.zeros((bottleneck,))
        added[f"{module}/adapter_up/kernel"] = jnp.zeros((bottleneck, width))
        added[f"{module}/adapter_up/bias"] = jnp.zeros((width,))
    return added


def split_adapters(params: Mapping) -> tuple[dict, dict]:
    """(the model's own parameters, nested; the adapters' flat {path: array})."""
    flat = flatten(params)
    added = {p: v for p, v in flat.items() if re.search(ADDED_PATTERN, p)}
    return unflatten({p: v for p, v in flat.items() if p not in added}), added


def adapter_forward(forward, targets: Mapping[str, int]):
    """`forward` with an adapter applied to each target dense layer's output."""

    def wrapped(params, model_state, batch, rng, train):
        base, added = split_adapters(params)

        def intercept(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            path = "/".join(context.module.path)
            if context.method_name != "__call__" or path not in targets:
                return out
            if not isinstance(context.module, nn.Dense):
                return out
            w = lambda name: added[f"{path}/{name}"].astype(out.dtype)
            hidden = nn.gelu(out @ w("adapter_down/kernel") + w("adapter_down/bias"), False)
            return out + hidden @ w("adapter_up/kernel") + w("adapter_up/bias")

        with nn.intercept_methods(intercept):
            return forward(base, model_state, batch, rng, train)

    return wrapped
