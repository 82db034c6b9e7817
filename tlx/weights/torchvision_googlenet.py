"""torchvision GoogLeNet state dicts -> tlx's GoogLeNet `params` and `batch_stats`.

The one non-mechanical step is the aux heads' fc1: torchvision flattens the 128x4x4 map in NCHW
(C, H, W) order, tlx in NHWC (H, W, C); `aux_fc1_kernel` permutes fc1's input axis to match.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tlx.models.googlenet import GoogLeNet
from tlx.weights.rules import Rule, conv_bn_rules, convert_variables, expected_shapes, transpose

_INCEPTION = r"(inception[345][a-e])"
_AUX_CHANNELS, _AUX_GRID = 128, 4  # InceptionAux: 1x1 conv to 128, adaptive pool to 4x4


def aux_fc1_kernel(w: np.ndarray) -> np.ndarray:
    """torch fc1 weight [out, C*H*W] (C, H, W flatten) -> flax kernel [H*W*C, out] (H, W, C)."""
    c, g = _AUX_CHANNELS, _AUX_GRID
    if w.ndim != 2 or w.shape[1] != c * g * g:
        raise ValueError(f"expected an aux fc1 weight [out, {c * g * g}], got shape {w.shape}")
    w = w.reshape(w.shape[0], c, g, g).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
    return np.ascontiguousarray(w.T)


def _basic_conv(source: str, target: str) -> list[Rule]:
    """torchvision's BasicConv2d (`conv` + `bn`) -> tlx's (`conv/kernel`, `bn/...`)."""
    return conv_bn_rules(source + r"\.conv", source + r"\.bn", target)


def _dense(source: str, target: str, kernel_transform=transpose) -> list[Rule]:
    return [
        Rule(source + r"\.weight", f"params/{target}/kernel", kernel_transform),
        Rule(source + r"\.bias", f"params/{target}/bias"),
    ]


_BACKBONE_RULES: list[Rule] = [
    *_basic_conv(r"(conv[123])", r"\1"),
    *_basic_conv(_INCEPTION + r"\.branch1", r"\1/branch1"),
    # Sequential branches: branch2/branch3 = [1x1, 3x3]; branch4 = [MaxPool2d, 1x1].
    *_basic_conv(_INCEPTION + r"\.branch([23])\.([01])", r"\1/branch\2_\3"),
    *_basic_conv(_INCEPTION + r"\.branch4\.1", r"\1/branch4_1"),
    *_dense(r"fc", "fc"),
    # Dropped on purpose: BatchNorm's step counter, unused in eval and by flax.
    Rule(r"(conv[123]|inception[345][a-e])\..*\.num_batches_tracked", None),
]

_AUX_RULES: list[Rule] = [
    *_basic_conv(r"(aux[12])\.conv", r"\1/conv"),
    *_dense(r"(aux[12])\.fc1", r"\1/fc1", aux_fc1_kernel),
    *_dense(r"(aux[12])\.fc2", r"\1/fc2"),
    Rule(r"aux[12]\..*\.num_batches_tracked", None),
]

# torchvision's ImageNet checkpoint ships aux heads whose weights were never trained.
_DROP_AUX_RULES: list[Rule] = [Rule(r"aux[12]\..*", None)]


def convert_googlenet(state_dict: dict[str, np.ndarray], aux_logits: bool = True) -> dict:
    """A torchvision googlenet state dict -> {"params": nested, "batch_stats": nested} for
    `GoogLeNet(num_classes=<from fc.weight>, aux_logits=aux_logits)`.

    `aux_logits=False` drops every `aux1.*` / `aux2.*` key on purpose (torchvision's released
    ImageNet checkpoint has untrained aux heads). Raises one ConversionError naming every
    missing, unexpected or mis-shaped key.
    """
    state_dict = {k: np.asarray(v) for k, v in state_dict.items()}
    fc = state_dict.get("fc.weight")
    num_classes = int(fc.shape[0]) if fc is not None and fc.ndim == 2 else 1000
    rules = _BACKBONE_RULES + (_AUX_RULES if aux_logits else _DROP_AUX_RULES)
    return convert_variables(state_dict, rules, dict(_expected(num_classes, aux_logits)))


@functools.lru_cache(maxsize=8)
def _expected(num_classes: int, aux_logits: bool) -> dict[str, tuple[int, ...]]:
    """Every target the converter must produce, with its shape, from an abstract init (cached:
    tracing the init costs about half a second)."""
    model = GoogLeNet(num_classes=num_classes, aux_logits=aux_logits)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32))
    )
    return expected_shapes(variables)
