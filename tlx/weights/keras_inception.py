"""keras.applications InceptionV3 weights (as read by `read_keras_h5`) -> tlx's InceptionV3.

Keras names its layers only by an auto-incremented counter: `conv2d_1` ... `conv2d_94` and
`batch_normalization_1` ... in the downloaded files (saved by Keras 2), `conv2d`, `conv2d_1`, ...
in a fresh Keras 3 session, offset further when other models were built first. The file's own
layer order is topological, not creation order. So layers are paired by the rank of their counter
(their creation order) with tlx's BasicConv2d modules in `BASIC_CONV_ORDER`, which lists them in
the order keras.applications' `conv2d_bn` calls create them (which is also torchvision's order);
each pairing is checked by kernel shape, and every mismatch is reported in one ConversionError.

Tensors: Conv2D kernels are already HWIO and Dense kernels [in, out]; the convs have no bias,
like torchvision's. Keras' BatchNormalization there has `scale=False`: there is no gamma, and
ones are written for the flax scale. The include_top file adds `predictions` (-> `fc`); the notop
file loads into `InceptionV3(num_classes=None)`. Keras has no aux head. Keras' average pools
exclude the padding, so build the model with `avg_pool_count_include_pad=False`; Keras expects
inputs scaled to [-1, 1] (`inception_v3.preprocess_input`), which is this module's caller's job.
"""

from __future__ import annotations

import re

import numpy as np

from tlx.weights.rules import ConversionError, Rule, convert_variables
from tlx.weights.torchvision_inception import inception_v3_expected

# BasicConv2d names inside each kind of Mixed block, in keras.applications' creation order.
_BLOCK_CONVS = {
    "A": (  # mixed0-2 (Mixed_5b-5d)
        "branch1x1",
        "branch5x5_1",
        "branch5x5_2",
        "branch3x3dbl_1",
        "branch3x3dbl_2",
        "branch3x3dbl_3",
        "branch_pool",
    ),
    "B": ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),  # mixed3 (Mixed_6a)
    "C": (  # mixed4-7 (Mixed_6b-6e)
        "branch1x1",
        "branch7x7_1",
        "branch7x7_2",
        "branch7x7_3",
        "branch7x7dbl_1",
        "branch7x7dbl_2",
        "branch7x7dbl_3",
        "branch7x7dbl_4",
        "branch7x7dbl_5",
        "branch_pool",
    ),
    "D": (  # mixed8 (Mixed_7a)
        "branch3x3_1",
        "branch3x3_2",
        "branch7x7x3_1",
        "branch7x7x3_2",
        "branch7x7x3_3",
        "branch7x7x3_4",
    ),
    "E": (  # mixed9, mixed10 (Mixed_7b, 7c); keras creates 1x3 before 3x1, like torch's 2a, 2b
        "branch1x1",
        "branch3x3_1",
        "branch3x3_2a",
        "branch3x3_2b",
        "branch3x3dbl_1",
        "branch3x3dbl_2",
        "branch3x3dbl_3a",
        "branch3x3dbl_3b",
        "branch_pool",
    ),
}
_BLOCK_KINDS = (
    ("Mixed_5b", "A"),
    ("Mixed_5c", "A"),
    ("Mixed_5d", "A"),
    ("Mixed_6a", "B"),
    ("Mixed_6b", "C"),
    ("Mixed_6c", "C"),
    ("Mixed_6d", "C"),
    ("Mixed_6e", "C"),
    ("Mixed_7a", "D"),
    ("Mixed_7b", "E"),
    ("Mixed_7c", "E"),
)

# The 94 conv + BN pairs, in Keras' creation order, as tlx module paths.
BASIC_CONV_ORDER: tuple[str, ...] = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    *(f"{block}/{conv}" for block, kind in _BLOCK_KINDS for conv in _BLOCK_CONVS[kind]),
)

_CONV_LAYER = re.compile(r"conv2d(?:_(\d+))?")
_BN_LAYER = re.compile(r"batch_normalization(?:_(\d+))?")


def _creation_rank(layers: set[str], pattern: re.Pattern) -> list[str]:
    """Layers named `<base>` / `<base>_<n>`, in creation order (`<base>` alone is the first)."""
    found = [(m, layer) for layer in layers if (m := pattern.fullmatch(layer))]
    return [layer for m, layer in sorted(found, key=lambda t: int(t[0].group(1) or 0))]


def pair_keras_layers(weights: dict[str, np.ndarray]) -> list[tuple[str, str, str]]:
    """[(keras conv layer, keras BN layer, tlx module path)] in creation order.

    Raises ConversionError when the counts are not 94 or a kernel's shape (or its BN's width)
    does not fit the module it is paired with; every such pairing is listed.
    """
    layers = {key.split("/", 1)[0] for key in weights}
    convs = _creation_rank(layers, _CONV_LAYER)
    bns = _creation_rank(layers, _BN_LAYER)
    n = len(BASIC_CONV_ORDER)
    problems = [
        f"found {len(found)} {kind} layers ({found[:1] + found[-1:]} ...), InceptionV3 has {n}"
        for kind, found in (("Conv2D", convs), ("BatchNormalization", bns))
        if len(found) != n
    ]
    if problems:
        raise ConversionError(problems)
    expected = inception_v3_expected(None, aux_logits=False)
    for i, (conv, bn, path) in enumerate(zip(convs, bns, BASIC_CONV_ORDER)):
        kernel = weights.get(f"{conv}/kernel")
        want = expected[f"params/{path}/conv/kernel"]
        if kernel is None or tuple(kernel.shape) != want:
            got = None if kernel is None else tuple(kernel.shape)
            problems.append(
                f"conv #{i} in creation order, {conv!r}, has kernel {got}; it pairs with "
                f"{path!r}, which expects {want}"
            )
        beta = weights.get(f"{bn}/beta")
        if beta is None or tuple(beta.shape) != (want[-1],):
            got = None if beta is None else tuple(beta.shape)
            problems.append(
                f"batch norm #{i} in creation order, {bn!r}, has beta {got}; it pairs with "
                f"{path!r}, which expects ({want[-1]},)"
            )
    if problems:
        raise ConversionError(problems)
    return list(zip(convs, bns, BASIC_CONV_ORDER))


def keras_inception_v3_rules(pairs: list[tuple[str, str, str]]) -> list[Rule]:
    """One exact-name rule per tensor for the given pairing, plus the optional classifier."""
    rules = []
    for conv, bn, path in pairs:
        conv, bn = re.escape(conv), re.escape(bn)
        rules += [
            Rule(rf"{conv}/kernel", f"params/{path}/conv/kernel"),
            Rule(rf"{bn}/gamma", f"params/{path}/bn/scale"),
            Rule(rf"{bn}/beta", f"params/{path}/bn/bias"),
            Rule(rf"{bn}/moving_mean", f"batch_stats/{path}/bn/mean"),
            Rule(rf"{bn}/moving_variance", f"batch_stats/{path}/bn/var"),
        ]
    rules += [
        Rule(r"predictions/kernel", "params/fc/kernel"),
        Rule(r"predictions/bias", "params/fc/bias"),
    ]
    return rules


def convert_keras_inception_v3(weights: dict[str, np.ndarray]) -> dict:
    """keras.applications InceptionV3 weights -> {"params", "batch_stats"} for
    `InceptionV3(num_classes=<predictions units>, avg_pool_count_include_pad=False)`, or
    `num_classes=None` for the notop file (no `predictions` layer).

    Raises one ConversionError naming every missing, unexpected or mis-shaped tensor, or the
    mis-paired layers.
    """
    weights = {k: np.asarray(v) for k, v in weights.items()}
    pairs = pair_keras_layers(weights)
    for _, bn, _ in pairs:  # scale=False: BN without gamma, i.e. gamma == 1
        if f"{bn}/gamma" not in weights:
            weights[f"{bn}/gamma"] = np.ones_like(weights[f"{bn}/beta"])
    top = weights.get("predictions/kernel")
    num_classes = top.shape[-1] if top is not None and top.ndim == 2 else None
    if top is None and "predictions/bias" in weights:
        num_classes = weights["predictions/bias"].shape[-1]  # then reported as a missing kernel
    expected = inception_v3_expected(num_classes, aux_logits=False)
    return convert_variables(weights, keras_inception_v3_rules(pairs), expected)
