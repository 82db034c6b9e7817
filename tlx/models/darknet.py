"""Darknet detectors (YOLOv3, YOLOv3-tiny, YOLOv4-tiny, ... from their cfg) in flax.linen, NHWC.

`Darknet(cfg=...)` builds any cfg `tlx.models.darknet_cfg.parse_cfg` accepts. Layer i's
parameters live under `layer_<i>` (`conv/kernel`, `conv/bias` without BatchNorm, `bn/scale`,
`bn/bias`, and `bn/mean`, `bn/var` in `batch_stats`), darknet's own numbering, so the `.weights`
conversion (tlx.weights.darknet) reads one-to-one. The model returns each [yolo] layer's raw
output, [batch, H, W, anchors * (5 + classes)]; tlx.detection.yolo turns it into boxes and scores
as darknet and OpenCV do. tests/models/test_darknet.py proves both equal to OpenCV's importer.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tlx.models.darknet_cfg import (
    Conv,
    DarknetSpec,
    MaxPool,
    Route,
    Shortcut,
    Upsample,
    Yolo,
    parse_cfg,
)

# Darknet's BatchNorm divides by sqrt(var) + 1e-6; OpenCV's importer uses sqrt(var + 1e-6).
BATCHNORM_EPSILON = 1e-6


def activate(x: jax.Array, name: str) -> jax.Array:
    if name == "leaky":
        return jnp.where(x > 0, x, 0.1 * x)
    if name == "relu":
        return jax.nn.relu(x)
    if name == "logistic":
        return jax.nn.sigmoid(x)
    if name == "mish":
        return x * jnp.tanh(jax.nn.softplus(x))
    if name == "swish":
        return x * jax.nn.sigmoid(x)
    return x  # linear


class DarknetConv(nn.Module):
    """[convolutional]: conv (bias only without BatchNorm), BatchNorm, activation. `folded`:
    BatchNorm already multiplied into the kernel and bias (fold_batchnorm), for inference."""

    layer: Conv
    dtype: Any = jnp.float32
    folded: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        spec = self.layer
        x = nn.Conv(
            spec.filters,
            (spec.size, spec.size),
            strides=spec.stride,
            padding=[(spec.padding, spec.padding)] * 2,
            feature_group_count=spec.groups,
            use_bias=self.folded or not spec.batch_normalize,
            dtype=self.dtype,
            name="conv",
        )(x)
        if spec.batch_normalize and not self.folded:
            x = nn.BatchNorm(
                momentum=0.99,  # darknet's rolling statistics keep 0.99 of the old value
                epsilon=BATCHNORM_EPSILON,
                dtype=self.dtype,
                name="bn",
            )(x, use_running_average=not train)  # at call time: tlx's BatchNorm policies set it
        return activate(x, spec.activation)


def max_pool(x: jax.Array, layer: MaxPool) -> jax.Array:
    """Darknet's max-pool: padded with -inf (reduce_window's init), `pad_before` then the rest."""
    pads = (
        (0, 0),
        (layer.pad_before, layer.pad_after),
        (layer.pad_before, layer.pad_after),
        (0, 0),
    )
    return jax.lax.reduce_window(
        x,
        -jnp.inf,
        jax.lax.max,
        (1, layer.size, layer.size, 1),
        (1, layer.stride, layer.stride, 1),
        pads,
    )


def route(outputs: list[jax.Array], layer: Route) -> jax.Array:
    x = jnp.concatenate([outputs[i] for i in layer.layers], axis=-1)
    if layer.groups > 1:
        size = x.shape[-1] // layer.groups
        x = x[..., layer.group_id * size : (layer.group_id + 1) * size]
    return x


class Darknet(nn.Module):
    """A darknet detector from its cfg (a bundled name, a path or the cfg text); `num_classes`
    resizes every [yolo] layer and its head convolution (a new task's heads, the rest pretrained);
    `image_size` sets the input the spec's shapes (and so the YOLO targets) are computed for."""

    cfg: str
    num_classes: int | None = None
    backbone_layers: int | None = None
    image_size: int | None = None  # the square input; None: the cfg's [net] width and height
    dtype: Any = jnp.float32
    folded_batchnorm: bool = False  # inference only: variables from fold_batchnorm

    @property
    def spec(self) -> DarknetSpec:
        spec = parse_cfg(self.cfg, self.backbone_layers, self.image_size)
        if self.num_classes is not None and self.num_classes != spec.num_classes:
            spec = spec.with_classes(self.num_classes)
        return spec

    @nn.compact
    def __call__(self, x, train: bool = False) -> tuple[jax.Array, ...]:
        outputs: list[jax.Array] = []
        yolo_outputs = []
        for i, layer in enumerate(self.spec.layers):
            if isinstance(layer, Conv):
                x = DarknetConv(
                    layer, dtype=self.dtype, folded=self.folded_batchnorm, name=f"layer_{i}"
                )(x, train=train)
            elif isinstance(layer, MaxPool):
                x = max_pool(x, layer)
            elif isinstance(layer, Route):
                x = route(outputs, layer)
            elif isinstance(layer, Shortcut):
                x = activate(x + outputs[layer.source], layer.activation)
            elif isinstance(layer, Upsample):
                x = jnp.repeat(jnp.repeat(x, layer.stride, axis=1), layer.stride, axis=2)
            elif isinstance(layer, Yolo):
                yolo_outputs.append(x.astype(jnp.float32))
            outputs.append(x)
        return tuple(yolo_outputs)


def fold_batchnorm(variables: dict) -> dict:
    """Inference variables for `Darknet(..., folded_batchnorm=True)`: each layer's BatchNorm
    (running statistics) multiplied into its conv, so a layer is one convolution plus a bias
    instead of a convolution and four elementwise passes:
    kernel * s and bias - mean * s, with s = scale / sqrt(var + eps).
    Layers without BatchNorm (the heads) keep their kernel and bias."""
    params, stats = variables["params"], variables.get("batch_stats", {})
    folded = {}
    for name, layer in params.items():
        if "bn" not in layer:
            folded[name] = {"conv": dict(layer["conv"])}
            continue
        bn, running = layer["bn"], stats[name]["bn"]
        s = bn["scale"] / jnp.sqrt(running["var"] + BATCHNORM_EPSILON)
        bias = bn["bias"] - running["mean"] * s
        folded[name] = {"conv": {"kernel": layer["conv"]["kernel"] * s, "bias": bias}}
    return {"params": folded}


def darknet_param_groups(
    cfg: str, backbone_layers: int | None = None, num_classes: int | None = None
) -> list[tuple[str, str]]:
    """Ordered input -> output groups of the layers with parameters: backbone (darknet's
    partial-weights prefix), neck (the rest but the heads), then one group per detection head
    (the conv before each [yolo], input order)."""
    spec = parse_cfg(cfg, backbone_layers=backbone_layers)
    heads = spec.head_indices
    convs = [i for i, layer in enumerate(spec.layers) if isinstance(layer, Conv) and i not in heads]
    backbone = [i for i in convs if i < spec.backbone_layers]
    neck = [i for i in convs if i >= spec.backbone_layers]

    def pattern(indices):
        return rf"^layer_(?:{'|'.join(map(str, indices))})/"

    # A group without parameters is left out (a cfg whose heads sit right on the backbone).
    groups = [(name, pattern(ix)) for name, ix in (("backbone", backbone), ("neck", neck)) if ix]
    groups += [(f"head_{k}", pattern([i])) for k, i in enumerate(heads)]
    return groups
