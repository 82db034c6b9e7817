"""LoRA (Hu et al. 2021): a trained low-rank update beside chosen kernels of a pretrained model,
whose own weights stay frozen; the model's code is unchanged.

Each kernel whose '/'-joined path matches `peft.targets` (a regex, searched) gets two factors
next to it, `<module>/lora_a` and `<module>/lora_b`, so they fall in the kernel's own group and a
plan that trains a group trains its factors (tlx.peft.labels keeps the base weights frozen).
Hugging Face PEFT's layout: a dense kernel [in, out] gets A [in, r] and B [r, out]; a convolution
kernel [kh, kw, in, out] gets A [kh, kw, in, r] (a convolution with the layer's own strides and
padding) and B [r, out] (a 1x1 one). B starts at 0, so the model starts as the pretrained one;
A starts as PEFT's default (`init="kaiming"`: uniform in +-1/sqrt(fan_in)) or N(0, 1/r)
(`"gaussian"`).

The forward adds `alpha / r * B(A(dropout(x)))` to each matched layer's output, through flax's
method interception (`nn.intercept_methods`) around the bundle's own forward, so the dropout on
the LoRA input is PEFT's. `merge_lora` folds the factors into the kernels, W + alpha / r * A B:
the same function without that dropout, for inference and export.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from tlx.errors import ConfigError
from tlx.models.mobilenet_v2 import DepthwiseConv, PointwiseConv
from tlx.tree import flatten, unflatten

FACTORS = ("lora_a", "lora_b")
FACTOR_PATTERN = r"/lora_[ab]$"
INITS = ("kaiming", "gaussian")


@dataclasses.dataclass(frozen=True)
class LoraTarget:
    kernel: str  # the kernel's '/'-joined parameter path
    shape: tuple[int, ...]

    @property
    def module(self) -> str:
        return self.kernel.rsplit("/", 1)[0]

    @property
    def fan_in(self) -> int:
        return math.prod(self.shape[:-1])

    def factor_shapes(self, rank: int) -> dict[str, tuple[int, ...]]:
        return {"lora_a": (*self.shape[:-1], rank), "lora_b": (rank, self.shape[-1])}


def find_targets(param_shapes: Mapping[str, tuple], pattern: str, rank: int) -> list[LoraTarget]:
    """The dense and convolution kernels (2-D or 4-D '.../kernel' parameters) whose path matches
    `pattern`; refuses a pattern that matches none and a rank above a kernel's smaller side."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"peft.targets={pattern!r} is not a regular expression: {exc}") from exc
    kernels = {
        p: tuple(s) for p, s in param_shapes.items() if p.endswith("/kernel") and len(s) in (2, 4)
    }
    targets = [LoraTarget(p, s) for p, s in kernels.items() if compiled.search(p)]
    if not targets:
        examples = ", ".join(sorted(kernels)[:6])
        raise ConfigError(
            f"peft.targets={pattern!r} matches no dense or convolution kernel; the model's "
            f"kernels include {examples} ... (`python -m tlx.inspect` lists them). Write a regex "
            "searched in these paths, e.g. 'attention/self/(query|value)/kernel'."
        )
    too_small = [t for t in targets if rank > min(t.fan_in, t.shape[-1])]
    if too_small:
        worst = too_small[0]
        raise ConfigError(
            f"peft.rank={rank} is larger than the smaller side of {len(too_small)} matched "
            f"kernel(s), e.g. {worst.kernel} {worst.shape} (fan-in {worst.fan_in}, "
            f"{worst.shape[-1]} outputs): a rank above it adds nothing. Lower peft.rank to at most "
            f"{min(min(t.fan_in, t.shape[-1]) for t in targets)} or narrow peft.targets."
        )
    return targets


def init_factors(rng, targets: list[LoraTarget], rank: int, init: str) -> dict[str, jax.Array]:
    """Flat {path: array}: each A random as `init` says, each B zero."""
    factors = {}
    for i, target in enumerate(targets):
        shapes = target.factor_shapes(rank)
        key = jax.random.fold_in(rng, i)
        if init == "kaiming":  # PEFT: kaiming_uniform(a=sqrt(5)) on A, bound 1/sqrt(fan_in)
            bound = 1.0 / math.sqrt(target.fan_in)
            a = jax.random.uniform(key, shapes["lora_a"], jnp.float32, -bound, bound)
        else:
            a = jax.random.normal(key, shapes["lora_a"], jnp.float32) / rank
        factors[f"{target.module}/lora_a"] = a
        factors[f"{target.module}/lora_b"] = jnp.zeros(shapes["lora_b"], jnp.float32)
    return factors


def split_factors(params: Mapping) -> tuple[dict, dict]:
    """(the model's own parameters, nested; {module path: {"lora_a", "lora_b"}})."""
    flat = flatten(params)
    base = {p: v for p, v in flat.items() if not re.search(FACTOR_PATTERN, p)}
    factors: dict[str, dict] = {}
    for p, v in flat.items():
        if re.search(FACTOR_PATTERN, p):
            module, name = p.rsplit("/", 1)
            factors.setdefault(module, {})[name] = v
    return unflatten(base), factors


def merge_lora(params: Mapping, scale: float) -> dict:
    """The parameters with each kernel's factors folded in, W + scale * A B (nested, no factors
    left): the LoRA model as a plain one, for inference and export."""
    base, factors = split_factors(params)
    flat = flatten(base)
    for module, f in factors.items():
        kernel = flat[f"{module}/kernel"]
        a = f["lora_a"].reshape(-1, f["lora_a"].shape[-1])
        delta = (a @ f["lora_b"]).reshape(kernel.shape) * scale
        flat[f"{module}/kernel"] = (kernel + delta).astype(kernel.dtype)
    return unflatten(flat)


# Layers LoRA wraps: flax's, and MobileNetV2's matrix-product 1x1 convolution (same kernel layout).
WRAPPABLE = (nn.Dense, nn.Conv, PointwiseConv)


def _lora_branch(module: nn.Module, x, factors: Mapping, scale: float, dropout, rng):
    """scale * B(A(dropout(x))) for a dense or convolution layer: A as the layer itself with r
    outputs and no bias (its strides, padding and dtype), then B over the channels."""
    grouped = isinstance(module, nn.Conv) and module.feature_group_count != 1
    if grouped or isinstance(module, DepthwiseConv):
        raise ConfigError(
            f"peft: {'/'.join(module.path)} is a grouped (e.g. depthwise) convolution, which LoRA "
            "does not apply to; leave it out of peft.targets."
        )
    if dropout > 0 and rng is not None:
        keep = jax.random.bernoulli(rng, 1.0 - dropout, x.shape)
        x = jnp.where(keep, x / (1.0 - dropout), 0).astype(x.dtype)
    rank = factors["lora_a"].shape[-1]
    no_bias = {"use_bias": False} if hasattr(module, "use_bias") else {}
    reduce = module.clone(parent=None, features=rank, **no_bias)
    h = reduce.apply({"params": {"kernel": factors["lora_a"]}}, x)
    dtype = module.dtype or x.dtype
    return jnp.einsum("...r,ro->...o", h, factors["lora_b"].astype(dtype)) * jnp.asarray(
        scale, dtype
    )


def lora_forward(forward, scale: float, dropout: float, targets: list[LoraTarget]):
    """`forward` (the bundle's) with each target layer's LoRA branch added to its output."""
    expected = {t.module for t in targets}

    def wrapped(params, model_state, batch, rng, train):
        base, factors = split_factors(params)
        applied = set()

        def intercept(next_fun, args, kwargs, context):
            module = context.module
            path = "/".join(module.path)
            out = next_fun(*args, **kwargs)
            if context.method_name != "__call__" or path not in factors:
                return out
            if not isinstance(module, (*WRAPPABLE, DepthwiseConv)):
                return out
            applied.add(path)
            branch_rng = None
            if train and dropout > 0 and rng is not None:  # the same mask in every process
                branch_rng = jax.random.fold_in(rng, zlib.crc32(path.encode()))
            x = args[0] if args else kwargs["inputs"]
            return out + _lora_branch(module, x, factors[path], scale, dropout, branch_rng)

        with nn.intercept_methods(intercept):
            result = forward(base, model_state, batch, rng, train)
        missing = sorted(expected - applied)
        # Checked when training (evaluation may skip a layer, e.g. an auxiliary head), once per
        # trace: a target no layer call wraps would silently train nothing.
        if train and missing:
            raise ConfigError(
                f"peft: the kernels of {missing[:3]} are not applied by a dense or convolution "
                "layer LoRA wraps (nn.Dense, nn.Conv, MobileNetV2's pointwise convolution), so "
                "LoRA cannot wrap them; narrow peft.targets."
            )
        return result

    return wrapped
