"""Darknet `.weights` files: read them against their cfg, convert to tlx's Darknet variables, and
write them (the tests build random-weight files for any cfg this way).

The file is a header (int32 major, minor, revision; then `seen`, int64 from version 0.2 on, int32
before) and raw little-endian float32s, one block per [convolutional] layer in cfg order: with
batch_normalize, biases (BatchNorm's beta), scales (gamma), rolling mean, rolling variance; without,
the conv biases; then the kernel, [filters, in_channels / groups, size, size] (OIHW). Nothing else,
no names, so the cfg alone says how to cut the floats, and a file of any other length is the wrong
file for the cfg: that is checked before anything is converted.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from tlx.errors import InputError
from tlx.models.darknet_cfg import Conv, DarknetSpec, parse_cfg
from tlx.weights.rules import Rule, conv_kernel, convert_variables

HEADER_VERSION = (0, 2, 0)  # what write_weights writes: major, minor, revision (int64 `seen`)

DARKNET_RULES = [
    Rule(r"layers\.(\d+)\.weights", r"params/layer_\1/conv/kernel", conv_kernel),
    Rule(r"layers\.(\d+)\.conv_biases", r"params/layer_\1/conv/bias"),
    Rule(r"layers\.(\d+)\.biases", r"params/layer_\1/bn/bias"),
    Rule(r"layers\.(\d+)\.scales", r"params/layer_\1/bn/scale"),
    Rule(r"layers\.(\d+)\.rolling_mean", r"batch_stats/layer_\1/bn/mean"),
    Rule(r"layers\.(\d+)\.rolling_variance", r"batch_stats/layer_\1/bn/var"),
]


def _blocks(layer: Conv) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of each float block of one conv layer, in file order."""
    n = layer.filters
    if layer.batch_normalize:
        blocks = [("biases", (n,)), ("scales", (n,)), ("rolling_mean", (n,))]
        blocks.append(("rolling_variance", (n,)))
    else:
        blocks = [("conv_biases", (n,))]
    kernel = (n, layer.in_channels // layer.groups, layer.size, layer.size)
    return blocks + [("weights", kernel)]


def layout(spec: DarknetSpec) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor a .weights file for `spec` holds, as (key, shape) in file order."""
    return [
        (f"layers.{i}.{name}", shape)
        for i, layer in enumerate(spec.layers)
        if isinstance(layer, Conv)
        for name, shape in _blocks(layer)
    ]


def _header_bytes(major: int, minor: int) -> int:
    wide_seen = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    return 12 + (8 if wide_seen else 4)


def read_darknet_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A .weights file as read without its cfg: {"version": int32 [3], "floats": float32 [n]}."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    if len(data) < 16:
        raise InputError(f"{path}: {len(data)} bytes is too short for a darknet .weights file")
    version = np.frombuffer(data[:12], "<i4").copy()
    offset = _header_bytes(int(version[0]), int(version[1]))
    if (len(data) - offset) % 4:
        raise InputError(f"{path}: {len(data) - offset} bytes after the header: not float32s")
    return {"version": version, "floats": np.frombuffer(data, "<f4", offset=offset)}


def cut_weights(raw: dict[str, np.ndarray], spec: DarknetSpec, source: str = "the .weights file"):
    """read_darknet_file's floats -> {"layers.<i>.<block>": array} in the cfg's order.

    InputError when the count does not fit the cfg, before anything is converted."""
    floats, (major, minor, _) = raw["floats"], raw["version"]
    blocks = layout(spec)
    expected = sum(int(np.prod(shape)) for _, shape in blocks)
    if floats.size != expected:
        convs = sum(isinstance(layer, Conv) for layer in spec.layers)
        raise InputError(
            f"{source}: holds {floats.size:,} floats after its header (version {major}.{minor}), "
            f"but cfg {spec.name!r} needs {expected:,} for its {convs} convolutional layers. Use "
            "the cfg these weights were trained with (same filters, classes and layer order)."
        )
    tensors, start = {}, 0
    for key, shape in blocks:
        size = int(np.prod(shape))
        tensors[key] = floats[start : start + size].reshape(shape).copy()
        start += size
    return tensors


def read_weights(path: str | os.PathLike, spec: DarknetSpec | str) -> dict[str, np.ndarray]:
    """A .weights file cut into {"layers.<i>.<block>": array} by its cfg (a spec, a bundled cfg
    name, a path or the text); InputError naming the file when its size does not fit the cfg."""
    spec = parse_cfg(spec) if isinstance(spec, str) else spec
    return cut_weights(read_darknet_file(path), spec, source=str(path))


def write_weights(path: str | os.PathLike, tensors: dict[str, np.ndarray], spec: DarknetSpec):
    """The inverse of read_weights: a version 0.2 file (int64 `seen` = 0) darknet and OpenCV read."""
    header = np.asarray(HEADER_VERSION, "<i4").tobytes() + np.zeros(1, "<i8").tobytes()
    body = [np.asarray(tensors[key], "<f4").reshape(shape).tobytes() for key, shape in layout(spec)]
    pathlib.Path(path).write_bytes(header + b"".join(body))


def convert_darknet(tensors: dict[str, np.ndarray], expected=None) -> dict:
    """read_weights' tensors -> {"params": ..., "batch_stats": ...} for tlx.models.darknet.Darknet."""
    return convert_variables(tensors, DARKNET_RULES, expected)


def convert_darknet_file(raw: dict[str, np.ndarray], cfg: str) -> dict:
    """The catalog's converter: read_darknet_file's contents and the cfg -> flax variables."""
    return convert_darknet(cut_weights(raw, parse_cfg(cfg)))


def random_darknet_tensors(spec: DarknetSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible random weights for `spec` (kernels scaled by fan-in, positive variances), the
    tests' stand-in for trained files of cfgs whose weights are not packaged."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for key, shape in layout(spec):
        if key.endswith(".weights"):
            fan_in = int(np.prod(shape[1:]))
            tensors[key] = rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(np.float32)
        elif key.endswith(".rolling_variance"):
            tensors[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif key.endswith(".scales"):
            tensors[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            tensors[key] = rng.normal(0, 0.1, shape).astype(np.float32)
    return tensors


CLASS_PRIOR = 0.01  # a new class's initial probability (its bias): rare, as most cells are empty


def adapt_heads(params: dict, spec: DarknetSpec, num_classes: int) -> dict:
    """Flat pretrained params ("layer_<i>/conv/kernel", ...) of `spec`'s detector -> the same
    with every head conv sized for `num_classes`: each anchor keeps its pretrained box and
    objectness outputs (what is learnt about where objects are carries over); its class outputs
    start with zero weights and bias log(p / (1 - p)) for p = CLASS_PRIOR."""
    params = dict(params)
    prior = float(np.log(CLASS_PRIOR / (1 - CLASS_PRIOR)))
    for head in spec.head_indices:
        yolo = spec.layers[head + 1]
        anchors, old = len(yolo.anchors), 5 + yolo.classes
        kernel_key, bias_key = f"layer_{head}/conv/kernel", f"layer_{head}/conv/bias"
        kernel = np.asarray(params[kernel_key]).reshape(*params[kernel_key].shape[:3], anchors, old)
        bias = np.asarray(params[bias_key]).reshape(anchors, old)
        new_kernel = np.zeros((*kernel.shape[:4], 5 + num_classes), np.float32)
        new_kernel[..., :5] = kernel[..., :5]
        new_bias = np.full((anchors, 5 + num_classes), prior, np.float32)
        new_bias[:, :5] = bias[:, :5]
        params[kernel_key] = new_kernel.reshape(*kernel.shape[:3], -1)
        params[bias_key] = new_bias.reshape(-1)
    return params
