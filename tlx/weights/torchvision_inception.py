"""torchvision Inception3 state dicts -> tlx's InceptionV3 `params` and `batch_stats`.

tlx's module names mirror torchvision's attributes, so the rule table only swaps '.' for '/',
transposes conv (OIHW -> HWIO) and linear weights, and routes BatchNorm statistics to
`batch_stats`. The targets are checked against the model's own init (`expected_shapes`), so a
missing, extra or mis-shaped tensor is reported, all of them in one ConversionError.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tlx.models.inception_v3 import InceptionV3
from tlx.weights.rules import Rule, conv_bn_rules, convert_variables, expected_shapes, transpose

_STEM = r"(Conv2d_[0-9][a-z]_[0-9]x[0-9])"  # Conv2d_1a_3x3 ... Conv2d_4a_3x3
_BLOCK = r"(Mixed_[5-7][a-e]|AuxLogits)\.(\w+)"  # a BasicConv2d inside a Mixed block or the aux


def _basic_conv(src: str, dst: str) -> list[Rule]:
    """torchvision's BasicConv2d `<src>.conv` / `<src>.bn` -> our `<dst>/conv` / `<dst>/bn`."""
    return conv_bn_rules(src + r"\.conv", src + r"\.bn", dst)


_FC_RULES: list[Rule] = [
    Rule(r"fc\.weight", "params/fc/kernel", transpose),
    Rule(r"fc\.bias", "params/fc/bias"),
]

INCEPTION_V3_RULES: list[Rule] = [
    *_basic_conv(_STEM, r"\1"),
    *_basic_conv(_BLOCK, r"\1/\2"),  # includes AuxLogits.conv0 / conv1
    Rule(r"AuxLogits\.fc\.weight", "params/AuxLogits/fc/kernel", transpose),
    Rule(r"AuxLogits\.fc\.bias", "params/AuxLogits/fc/bias"),
    *_FC_RULES,
    # Dropped on purpose: BatchNorm's step counter, unused in eval and by flax.
    Rule(r".*\.bn\.num_batches_tracked", None),
]

# For a model built with aux_logits=False: every AuxLogits.* tensor is dropped on purpose, and the
# other rules exclude AuxLogits so that no key matches two rules.
INCEPTION_V3_RULES_NO_AUX: list[Rule] = [
    *_basic_conv(_STEM, r"\1"),
    *_basic_conv(r"(Mixed_[5-7][a-e])\.(\w+)", r"\1/\2"),
    *_FC_RULES,
    Rule(r"(Conv2d|Mixed)_.*\.bn\.num_batches_tracked", None),
    Rule(r"AuxLogits\..*", None),
]


@functools.cache
def _all_shapes() -> dict[str, tuple[int, ...]]:
    """Every variable of the largest variant (classifier and aux head, 1 class): one abstract init
    (no FLOPs, but seconds of tracing) serves every variant."""
    model = InceptionV3(num_classes=1, aux_logits=True)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 75, 75, 3))))
    return expected_shapes(variables)


def inception_v3_expected(
    num_classes: int | None = 1000, aux_logits: bool = True
) -> dict[str, tuple[int, ...]]:
    """Every target path and shape of `InceptionV3(num_classes, aux_logits=aux_logits)`'s
    variables (num_classes=None: without the classifier, and then without the aux head)."""
    out = {}
    for path, shape in _all_shapes().items():
        module = path.split("/")[1]
        if (module == "AuxLogits" and not (aux_logits and num_classes)) or (
            module == "fc" and not num_classes
        ):
            continue
        if path.startswith(("params/fc/", "params/AuxLogits/fc/")):  # [..., classes]
            shape = (*shape[:-1], num_classes)
        out[path] = shape
    return out


def convert_inception_v3(state_dict: dict[str, np.ndarray], aux_logits: bool = True) -> dict:
    """A torchvision inception_v3 state dict -> {"params": nested, "batch_stats": nested}, for
    `InceptionV3(num_classes=<fc rows>, aux_logits=aux_logits)`.

    aux_logits=False drops the AuxLogits.* tensors on purpose (a model built without the aux head).
    Raises one ConversionError naming every missing, unexpected or mis-shaped tensor.
    """
    state_dict = {k: np.asarray(v) for k, v in state_dict.items()}
    fc = state_dict.get("fc.weight")
    num_classes = fc.shape[0] if fc is not None and fc.ndim == 2 else 1000
    rules = INCEPTION_V3_RULES if aux_logits else INCEPTION_V3_RULES_NO_AUX
    expected = inception_v3_expected(num_classes, aux_logits)
    return convert_variables(state_dict, rules, expected)
