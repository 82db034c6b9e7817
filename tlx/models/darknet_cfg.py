"""Darknet `.cfg` files -> a static, hashable description of the network (`DarknetSpec`).

A cfg is a list of `[section]` headers with `key=value` lines; the first section is `[net]` (input
size), each later one a layer, numbered from 0 as darknet numbers them (route and shortcut refer
to these numbers, relative when negative). The parser resolves every reference to an absolute
index and tracks each layer's output shape, so a `.weights` file can be checked against the cfg
(tlx.weights.darknet) before any compute, and `tlx.models.darknet.Darknet` builds from the spec
alone. Semantics follow darknet's parser.c (pjreddie and AlexeyAB forks, which agree on every
option read here).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from importlib import resources

from tlx.errors import TlxError

ACTIVATIONS = ("linear", "leaky", "relu", "logistic", "mish", "swish")
# Darknet's own partial backbones ("darknet partial cfg weights out N"): how many leading layers
# its published backbone files keep, by cfg file name. Other cfgs: see _first_branch.
DARKNET_BACKBONE_LAYERS = {"yolov3-tiny": 15, "yolov3": 75, "yolov4-tiny": 29, "yolov4": 105}


class DarknetCfgError(TlxError, ValueError):
    """A cfg tlx cannot build; the message names the file, line and what to change."""


@dataclasses.dataclass(frozen=True)
class Conv:
    filters: int
    size: int
    stride: int
    padding: int  # pixels on every side
    groups: int
    batch_normalize: bool
    activation: str
    in_channels: int


@dataclasses.dataclass(frozen=True)
class MaxPool:
    size: int
    stride: int
    pad_before: int  # darknet pads (size - 1) in total, half before, with -inf
    pad_after: int


@dataclasses.dataclass(frozen=True)
class Route:
    layers: tuple[int, ...]  # absolute indices, concatenated on channels
    groups: int = 1  # keep channel slice `group_id` of `groups` (YOLOv4-tiny's CSP split)
    group_id: int = 0


@dataclasses.dataclass(frozen=True)
class Shortcut:
    source: int  # absolute index added to the previous layer's output
    activation: str


@dataclasses.dataclass(frozen=True)
class Upsample:
    stride: int


@dataclasses.dataclass(frozen=True)
class Yolo:
    anchors: tuple[tuple[float, float], ...]  # this layer's (w, h) in input pixels, by mask
    classes: int
    scale_x_y: float = 1.0


Layer = Conv | MaxPool | Route | Shortcut | Upsample | Yolo


@dataclasses.dataclass(frozen=True)
class DarknetSpec:
    """A parsed cfg: input size, layers and each layer's output (height, width, channels)."""

    name: str
    width: int
    height: int
    channels: int
    layers: tuple[Layer, ...]
    shapes: tuple[tuple[int, int, int], ...]
    backbone_layers: int

    @property
    def yolo_indices(self) -> tuple[int, ...]:
        return tuple(i for i, layer in enumerate(self.layers) if isinstance(layer, Yolo))

    @property
    def head_indices(self) -> tuple[int, ...]:
        """The convolution just before each [yolo] layer: the detection heads."""
        return tuple(i - 1 for i in self.yolo_indices)

    @property
    def num_classes(self) -> int:
        return self.layers[self.yolo_indices[0]].classes

    def with_classes(self, num_classes: int) -> DarknetSpec:
        """The same network with every [yolo] layer (and its head conv) sized for `num_classes`."""
        layers = list(self.layers)
        for i in self.yolo_indices:
            yolo = layers[i]
            layers[i] = dataclasses.replace(yolo, classes=num_classes)
            filters = len(yolo.anchors) * (5 + num_classes)
            layers[i - 1] = dataclasses.replace(layers[i - 1], filters=filters)
        shapes = list(self.shapes)
        for i in self.head_indices:
            shapes[i] = shapes[i][:2] + (layers[i].filters,)
            shapes[i + 1] = shapes[i]
        return dataclasses.replace(self, layers=tuple(layers), shapes=tuple(shapes))


def bundled_cfgs() -> tuple[str, ...]:
    """The cfgs tlx ships (tlx/models/cfg), by name: those of the catalog's darknet weights."""
    folder = resources.files("tlx.models").joinpath("cfg")
    return tuple(
        sorted(f.name.removesuffix(".cfg") for f in folder.iterdir() if f.name.endswith(".cfg"))
    )


def read_cfg(source: str | os.PathLike) -> tuple[str, str]:
    """A bundled cfg's name ("yolov3-tiny"), a cfg path, or cfg text itself -> (name, text)."""
    text = str(source)
    if text in bundled_cfgs():
        return text, resources.files("tlx.models").joinpath(f"cfg/{text}.cfg").read_text()
    if "[" not in text and os.path.exists(text):
        with open(text) as f:
            return os.path.basename(text).removesuffix(".cfg"), f.read()
    if "[" not in text:
        raise DarknetCfgError(
            f"darknet cfg {text!r} not found: pass a .cfg path, the cfg's text or a bundled "
            f"cfg's name ({', '.join(bundled_cfgs())}) "
            "(Debian's darknet package ships them under /usr/share/darknet/cfg)"
        )
    return "cfg", text


def _sections(text: str, name: str) -> list[tuple[str, int, dict[str, str]]]:
    sections: list[tuple[str, int, dict[str, str]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise DarknetCfgError(f"{name}:{number}: unterminated section header {raw!r}")
            sections.append((line[1:-1].strip(), number, {}))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][2][key.strip()] = value.strip()
        else:
            raise DarknetCfgError(f"{name}:{number}: expected [section] or key=value, got {raw!r}")
    if not sections or sections[0][0] not in ("net", "network"):
        raise DarknetCfgError(f"{name}: a darknet cfg starts with a [net] section")
    return sections


class _Options:
    """One section's options, read with darknet's defaults and errors that say where."""

    def __init__(self, name: str, kind: str, line: int, values: Mapping[str, str]):
        self.where = f"{name}:{line} [{kind}]"
        self.values = values

    def int(self, key: str, default: int | None = None) -> int:
        return int(self._get(key, default))

    def float(self, key: str, default: float | None = None) -> float:
        return float(self._get(key, default))

    def ints(self, key: str, default: str | None = None) -> tuple[int, ...]:
        return tuple(int(v) for v in str(self._get(key, default)).split(",") if v.strip())

    def str(self, key: str, default: str) -> str:
        return self.values.get(key, default)

    def _get(self, key, default):
        if key in self.values:
            return self.values[key]
        if default is None:
            raise DarknetCfgError(f"{self.where}: missing {key}=")
        return default

    def error(self, message: str) -> DarknetCfgError:
        return DarknetCfgError(f"{self.where}: {message}")


def parse_cfg(
    source: str | os.PathLike, backbone_layers: int | None = None, input_size: int | None = None
) -> DarknetSpec:
    """A darknet cfg (bundled name, path or text) -> DarknetSpec; DarknetCfgError on anything
    unsupported. `input_size` replaces the [net] width and height (a square input)."""
    name, text = read_cfg(source)
    sections = _sections(text, name)
    net = _Options(name, "net", sections[0][1], sections[0][2])
    width, height, channels = net.int("width"), net.int("height"), net.int("channels", 3)
    if input_size:
        width = height = int(input_size)
    layers: list[Layer] = []
    shapes: list[tuple[int, int, int]] = []
    for kind, line, values in sections[1:]:
        opts = _Options(name, kind, line, values)
        previous = shapes[-1] if shapes else (height, width, channels)
        build = _BUILDERS.get(kind)
        if build is None:
            raise opts.error(
                f"layer {len(layers)}: tlx does not support darknet's [{kind}] layers "
                f"(supported: {', '.join(sorted(_BUILDERS))}); remove it or use a cfg without it"
            )
        layer, shape = build(opts, previous, len(layers), shapes)
        layers.append(layer)
        shapes.append(shape)
    if not any(isinstance(layer, Yolo) for layer in layers):
        raise DarknetCfgError(f"{name}: no [yolo] layer; tlx builds darknet detectors only")
    if backbone_layers is None:
        backbone_layers = DARKNET_BACKBONE_LAYERS.get(name)
    if backbone_layers is None:
        backbone_layers = _first_branch(layers)
    return DarknetSpec(name, width, height, channels, tuple(layers), tuple(shapes), backbone_layers)


def _first_branch(layers) -> int:
    """The backbone of a cfg darknet publishes no partial weights for: the layers before the point
    where the first head's chain branches off (the last earlier layer a later [route] reads)."""
    head = next(i for i, layer in enumerate(layers) if isinstance(layer, Yolo)) - 1
    read_later = {
        source
        for layer in layers[head:]
        if isinstance(layer, Route | Shortcut)
        for source in (layer.layers if isinstance(layer, Route) else (layer.source,))
    }
    return max((i for i in read_later if i < head), default=head)


def _activation(opts: _Options, default: str = "logistic") -> str:
    activation = opts.str("activation", default)
    if activation not in ACTIVATIONS:
        raise opts.error(f"activation={activation} not supported (supported: {ACTIVATIONS})")
    return activation


def _conv(opts, previous, index, shapes):
    h, w, c = previous
    size, stride = opts.int("size", 1), opts.int("stride", 1)
    padding = size // 2 if opts.int("pad", 0) else opts.int("padding", 0)
    groups = opts.int("groups", 1)
    filters = opts.int("filters", 1)
    if c % groups or filters % groups:
        raise opts.error(f"groups={groups} must divide input ({c}) and filters ({filters})")
    unsupported = [
        k for k in ("binary", "xnor", "share_index", "deform", "antialiasing") if opts.int(k, 0)
    ] + (["dilation"] if opts.int("dilation", 1) != 1 else [])
    if unsupported:
        raise opts.error(f"{', '.join(unsupported)} not supported by tlx; remove from the cfg")
    layer = Conv(
        filters=filters,
        size=size,
        stride=stride,
        padding=padding,
        groups=groups,
        batch_normalize=bool(opts.int("batch_normalize", 0)),
        activation=_activation(opts),
        in_channels=c,
    )
    out = ((h + 2 * padding - size) // stride + 1, (w + 2 * padding - size) // stride + 1, filters)
    return layer, out


def _maxpool(opts, previous, index, shapes):
    h, w, c = previous
    size = opts.int("size", 1)
    stride = opts.int("stride", size)
    padding = opts.int("padding", size - 1)
    if opts.int("maxpool_depth", 0) or opts.int("stride_x", stride) != stride:
        raise opts.error("maxpool_depth and stride_x/stride_y are not supported by tlx")
    out_h, out_w = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    before = padding // 2
    after = max(0, (out_h - 1) * stride + size - h - before)
    return MaxPool(size, stride, before, after), (out_h, out_w, c)


def _absolute(opts, index: int, ref: int) -> int:
    absolute = index + ref if ref < 0 else ref
    if not 0 <= absolute < index:
        raise opts.error(f"layer {index} refers to layer {ref}, which is not an earlier layer")
    return absolute


def _route(opts, previous, index, shapes):
    sources = tuple(_absolute(opts, index, ref) for ref in opts.ints("layers"))
    first = shapes[sources[0]]
    if any(shapes[s][:2] != first[:2] for s in sources):
        found = [shapes[s] for s in sources]
        raise opts.error(f"routed layers {sources} have different sizes {found}")
    groups, group_id = opts.int("groups", 1), opts.int("group_id", 0)
    channels = sum(shapes[s][2] for s in sources)
    if channels % groups or not 0 <= group_id < groups:
        raise opts.error(f"groups={groups} group_id={group_id} do not split {channels} channels")
    return Route(sources, groups, group_id), (first[0], first[1], channels // groups)


def _shortcut(opts, previous, index, shapes):
    source = _absolute(opts, index, opts.int("from"))
    if shapes[source] != previous:
        raise opts.error(f"shortcut adds {shapes[source]} to {previous}; shapes must match")
    if "weights_type" in opts.values:
        raise opts.error("weighted shortcuts (weights_type=) are not supported by tlx")
    return Shortcut(source, _activation(opts, "linear")), previous


def _upsample(opts, previous, index, shapes):
    stride = opts.int("stride", 2)
    if stride < 1:
        raise opts.error("only upsampling (stride >= 1) is supported")
    h, w, c = previous
    return Upsample(stride), (h * stride, w * stride, c)


def _yolo(opts, previous, index, shapes):
    anchors = [float(v) for v in opts.str("anchors", "").split(",") if v.strip()]
    pairs = list(zip(anchors[::2], anchors[1::2]))
    mask = opts.ints("mask", ",".join(map(str, range(len(pairs)))))
    classes = opts.int("classes", 20)
    if not pairs or any(not 0 <= m < len(pairs) for m in mask):
        raise opts.error(f"mask={mask} does not index anchors ({len(pairs)} pairs)")
    if opts.int("new_coords", 0):
        raise opts.error("new_coords=1 (scaled-YOLOv4 decoding) is not supported by tlx")
    if previous[2] != len(mask) * (5 + classes):
        raise opts.error(
            f"expects {len(mask)} x (5 + {classes}) = {len(mask) * (5 + classes)} channels from "
            f"the layer before, found {previous[2]}: set that layer's filters="
        )
    yolo = Yolo(tuple(pairs[m] for m in mask), classes, opts.float("scale_x_y", 1.0))
    return yolo, previous


_BUILDERS = {
    "convolutional": _conv,
    "maxpool": _maxpool,
    "route": _route,
    "shortcut": _shortcut,
    "upsample": _upsample,
    "yolo": _yolo,
}
