"""A trained CNN back to a torchvision `state_dict` (safetensors), BatchNorm statistics and all.

The keys and shapes are the torchvision model's own (built on the meta device: no weights made);
each key's tlx variable comes from the same rule table the import uses (tlx.weights), the
transform inverted (a Linear weight transposed back, a convolution kernel HWIO -> OIHW, VGG's fc6
input reordered back to torchvision's C, H, W flattening). The export is converted forward again
and must give back the run's variables exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from tlx.errors import InputError
from tlx.weights.rules import Rule, conv_kernel, convert, transpose
from tlx.weights.torchvision_mobilenet import MOBILENET_V2_RULES
from tlx.weights.torchvision_resnet import RESNET_RULES
from tlx.weights.torchvision_vgg import fc6_kernel, vgg_rules


def conv_kernel_to_torch(x: np.ndarray) -> np.ndarray:
    """flax HWIO -> torch OIHW (the inverse of tlx.weights.rules.conv_kernel)."""
    return np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)))


def fc6_to_torch(kernel: np.ndarray, size: int = 7) -> np.ndarray:
    """tlx's fc6 [out, H*W*C] -> torchvision's classifier.0 weight [out, C*H*W] (inverse of
    tlx.weights.torchvision_vgg.fc6_kernel)."""
    out, flat = kernel.shape
    hwc = kernel.reshape(out, size * size, flat // (size * size)).transpose(0, 2, 1)
    return np.ascontiguousarray(hwc).reshape(out, flat)


INVERSES: dict[Callable | None, Callable] = {
    None: lambda x: x,
    transpose: transpose,
    conv_kernel: conv_kernel_to_torch,
    fc6_kernel: fc6_to_torch,
}


def arch_of(module) -> tuple[str, dict]:
    """(tlx architecture name, the constructor fields torchvision's model needs) of a module."""
    kind = type(module).__name__
    if kind == "MobileNetV2":
        return "mobilenet_v2", {"width_mult": module.width_mult}
    if kind == "ResNet":
        return "resnet", {"depth": module.depth}
    if kind == "VGG":
        return "vgg", {"depth": module.depth, "batch_norm": module.batch_norm}
    return kind, {}


def torchvision_target(arch: str, kwargs: Mapping, num_classes: int):
    """(the torchvision model on the meta device, the rule table) for a tlx architecture."""
    import torch
    import torchvision

    depth = kwargs.get("depth")
    if arch == "mobilenet_v2":
        build = lambda: torchvision.models.mobilenet_v2(
            num_classes=num_classes, width_mult=kwargs.get("width_mult", 1.0)
        )
        rules = MOBILENET_V2_RULES
    elif arch == "resnet":
        build = lambda: getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
        rules = RESNET_RULES
    elif arch == "vgg":
        batch_norm = bool(kwargs.get("batch_norm", False))
        name = f"vgg{depth}{'_bn' if batch_norm else ''}"
        build = lambda: getattr(torchvision.models, name)(num_classes=num_classes)
        rules = vgg_rules(depth, batch_norm)
    else:
        raise InputError(
            f"--format=torchvision exports mobilenet_v2, resnet and vgg models; this run's "
            f"model.arch is {arch!r}."
        )
    with torch.device("meta"):
        return build(), rules


def _rule_for(key: str, rules: list[Rule]):
    for rule in rules:
        if match := re.fullmatch(rule.pattern, key):
            return match, rule
    raise InputError(f"torchvision key {key!r} matches no rule of the import table")


def to_torchvision_state(variables: Mapping[str, Mapping], net, rules: list[Rule]) -> dict:
    """{torchvision key: array} for tlx `variables` ({"params": flat, "batch_stats": flat}),
    checked by converting it back through `rules`."""
    flat = {f"{c}/{p}": np.asarray(v) for c, tree in variables.items() for p, v in tree.items()}
    state = {}
    for key, like in net.state_dict().items():
        match, rule = _rule_for(key, rules)
        if rule.target is None:  # dropped on import (BatchNorm's step counter): torch's default
            state[key] = np.zeros(tuple(like.shape), np.int64)
            continue
        target = match.expand(rule.target)
        if rule.transform not in INVERSES:
            raise InputError(f"no inverse of the import's transform for {key!r}")
        value = INVERSES[rule.transform](flat[target].astype(np.float32))
        if tuple(value.shape) != tuple(like.shape):
            raise InputError(
                f"{target} {value.shape} does not fit torchvision's {key} {tuple(like.shape)}"
            )
        state[key] = np.ascontiguousarray(value)
    back = convert(state, rules)
    wrong = [t for t, v in back.items() if not np.array_equal(v, flat[t])]
    if wrong or set(back) != set(flat):
        raise AssertionError(
            f"the export does not convert back to the run's variables: {wrong[:3]}"
        )
    return state


def export_torchvision(variables, module, num_classes: int, out: Path):
    """Write `out`/model.safetensors, a state dict torchvision's model loads; the files written."""
    from safetensors.numpy import save_file

    arch, kwargs = arch_of(module)
    net, rules = torchvision_target(arch, kwargs, num_classes)
    state = to_torchvision_state(variables, net, rules)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt", "arch": arch})
    return [out / "model.safetensors"]
