"""GoogLeNet (Inception v1), torchvision's variant, in flax.linen, NHWC.

Submodule names mirror torchvision's attributes so the conversion table reads one-to-one:
`inception4a.branch2.1.conv.weight` becomes `inception4a/branch2_1/conv/kernel`,
`aux1.fc1.weight` becomes `aux1/fc1/kernel`. BatchNorm statistics live in `batch_stats`.
tests/models/test_googlenet.py proves eval mode (and train mode without dropout) equal to
torchvision's, block by block.

Two torchvision details are kept on purpose because the released weights depend on them:
the Inception "5x5" branch uses a 3x3 kernel, and every max pool uses `ceil_mode=True`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from tlx.models.dropout import Dropout
from tlx.models.pooling import check_pooling, global_pool

# Block boundaries sown into "intermediates", in forward order. Each is the output of the
# torchvision module named without the "_out" suffix (so its forward hook gives the reference);
# the suffix is needed because flax refuses a sown name equal to a submodule's ("Duplicate use of
# scope name") and the submodules keep torchvision's names for the weight conversion.
GOOGLENET_ENDPOINTS = (
    "maxpool2",  # the stem: conv1, maxpool1, conv2, conv3, maxpool2
    "inception3a_out",
    "inception3b_out",
    "inception4a_out",
    "inception4b_out",
    "inception4c_out",
    "inception4d_out",
    "inception4e_out",
    "inception5a_out",
    "inception5b_out",
)

# (name, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), torchvision's table.
INCEPTION_SETTING = (
    ("inception3a", 64, 96, 128, 16, 32, 32),
    ("inception3b", 128, 128, 192, 32, 96, 64),
    ("inception4a", 192, 96, 208, 16, 48, 64),
    ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64),
    ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128),
    ("inception5a", 256, 160, 320, 32, 128, 128),
    ("inception5b", 384, 192, 384, 48, 128, 128),
)

# Block -> the auxiliary classifier that branches off its output (torchvision's aux1, aux2).
AUX_BRANCHES = {"inception4a": "aux1", "inception4d": "aux2"}

# torchvision's `transform_input`: ImageNet-normalised input -> the (x - 0.5) / 0.5 scaling the
# original Caffe weights were trained with, per channel: x * scale + shift.
_TRANSFORM_SCALE = np.array([0.229, 0.224, 0.225], np.float32) / 0.5
_TRANSFORM_SHIFT = (np.array([0.485, 0.456, 0.406], np.float32) - 0.5) / 0.5


def _ceil_pool_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """PyTorch's ceil_mode output size: round up, but drop a last window that would start
    entirely in the right padding."""
    out = math.ceil((size + 2 * padding - kernel) / stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def max_pool_ceil(x, kernel: int, stride: int, padding: int = 0):
    """NHWC max pool equal to torch's MaxPool2d(kernel, stride, padding, ceil_mode=True).

    The extra windows ceil mode adds are made by padding the right/bottom with -inf, so they take
    the max over the in-bounds part only, as torch does.
    """
    out_h = _ceil_pool_size(x.shape[1], kernel, stride, padding)
    out_w = _ceil_pool_size(x.shape[2], kernel, stride, padding)
    pad_h = max((out_h - 1) * stride + kernel - x.shape[1] - padding, 0)
    pad_w = max((out_w - 1) * stride + kernel - x.shape[2] - padding, 0)
    y = lax.reduce_window(
        x,
        jnp.array(-jnp.inf, x.dtype),
        lax.max,
        (1, kernel, kernel, 1),
        (1, stride, stride, 1),
        ((0, 0), (padding, pad_h), (padding, pad_w), (0, 0)),
    )
    return y[:, :out_h, :out_w, :]


def _adaptive_pool_matrix(size: int, out: int) -> np.ndarray:
    """[out, size] averaging matrix of torch's adaptive_avg_pool over one axis: bin i averages
    [floor(i*size/out), ceil((i+1)*size/out)), so bins may overlap (e.g. 14 -> 4)."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x, output_size: int):
    """NHWC equivalent of torch's F.adaptive_avg_pool2d(x, (output_size, output_size))."""
    ph = jnp.asarray(_adaptive_pool_matrix(x.shape[1], output_size), x.dtype)
    pw = jnp.asarray(_adaptive_pool_matrix(x.shape[2], output_size), x.dtype)
    return jnp.einsum("ih,nhwc,jw->nijc", ph, x, pw, precision=lax.Precision.HIGHEST)


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU, torchvision's BasicConv2d."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        k, p = self.kernel_size, self.padding
        x = nn.Conv(
            self.features,
            (k, k),
            strides=(self.stride, self.stride),
            padding=((p, p), (p, p)),  # torch's explicit symmetric padding, not 'SAME'
            use_bias=False,
            dtype=self.dtype,
            name="conv",
        )(x)
        # `use_running_average` is given at call time, not to the constructor, so that a method
        # interceptor may override it (tlx.zoo.vision's "frozen" BatchNorm mode does).
        x = nn.BatchNorm(
            momentum=0.9,  # torch's momentum=0.1
            epsilon=1e-3,
            use_fast_variance=False,  # batch variance as torch computes it, not E[x^2] - E[x]^2
            dtype=self.dtype,
            name="bn",
        )(x, use_running_average=not train)
        return nn.relu(x)


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1 -> 3x3 | 1x1 -> "5x5" |
    3x3 max pool -> 1x1."""

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        conv = functools.partial(BasicConv2d, dtype=self.dtype)
        b1 = conv(self.ch1x1, 1, name="branch1")(x, train=train)
        b2 = conv(self.ch3x3red, 1, name="branch2_0")(x, train=train)
        b2 = conv(self.ch3x3, 3, padding=1, name="branch2_1")(b2, train=train)
        b3 = conv(self.ch5x5red, 1, name="branch3_0")(x, train=train)
        # torchvision's "5x5" branch really is 3x3 (pytorch/vision#906), kept for its weights.
        b3 = conv(self.ch5x5, 3, padding=1, name="branch3_1")(b3, train=train)
        b4 = max_pool_ceil(x, 3, 1, 1)  # torch's branch4.0; it has no params
        b4 = conv(self.pool_proj, 1, name="branch4_1")(b4, train=train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: adaptive avg pool 4x4 -> 1x1 conv 128 -> fc1 1024 + ReLU ->
    dropout -> fc2.

    fc1 sees an NHWC (H, W, C) flatten; torchvision's sees (C, H, W). The converter permutes
    fc1's input axis so both compute the same function.
    """

    num_classes: int
    dropout: float = 0.7
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = adaptive_avg_pool(x, 4)
        x = BasicConv2d(128, 1, dtype=self.dtype, name="conv")(x, train=train)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(1024, dtype=self.dtype, name="fc1")(x))
        x = Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc2")(x)


class GoogLeNet(nn.Module):
    """torchvision's googlenet.

    `num_classes=None` drops the classifier and returns features pooled by `pooling` ("avg",
    "max", or None for the last NHWC feature map); with a classifier, pooling is always "avg".
    With `aux_logits=True` and `train=True` the call returns `(logits, aux2, aux1)`,
    torchvision's order; in eval it returns logits only (torchvision does the same).
    `transform_input=True` is what torchvision's ImageNet weights expect: they were ported from
    Caffe and want (x - 0.5) / 0.5 pixels, and it converts ImageNet-normalised input to that.
    """

    num_classes: int | None = 1000
    pooling: str | None = "avg"
    aux_logits: bool = False
    transform_input: bool = False
    dropout: float = 0.2
    aux_dropout: float = 0.7
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        check_pooling(self.pooling)
        if self.aux_logits and self.num_classes is None:
            raise ValueError("aux_logits=True needs num_classes: the aux heads are classifiers")
        x = x.astype(self.dtype)
        if self.transform_input:
            x = x * jnp.asarray(_TRANSFORM_SCALE, self.dtype) + jnp.asarray(
                _TRANSFORM_SHIFT, self.dtype
            )
        conv = functools.partial(BasicConv2d, dtype=self.dtype)
        x = conv(64, 7, stride=2, padding=3, name="conv1")(x, train=train)
        x = max_pool_ceil(x, 3, 2)
        x = conv(64, 1, name="conv2")(x, train=train)
        x = conv(192, 3, padding=1, name="conv3")(x, train=train)
        x = max_pool_ceil(x, 3, 2)
        self.sow("intermediates", "maxpool2", x)
        # The aux heads also run at init so that their params exist like torchvision's do.
        run_aux = self.aux_logits and (train or self.is_initializing())
        aux = {}
        for name, *channels in INCEPTION_SETTING:
            if name == "inception4a":
                x = max_pool_ceil(x, 3, 2)  # torch's maxpool3
            elif name == "inception5a":
                x = max_pool_ceil(x, 2, 2)  # torch's maxpool4
            x = Inception(*channels, dtype=self.dtype, name=name)(x, train=train)
            self.sow("intermediates", f"{name}_out", x)
            if run_aux and name in AUX_BRANCHES:
                head = AUX_BRANCHES[name]
                aux[head] = InceptionAux(
                    self.num_classes, self.aux_dropout, dtype=self.dtype, name=head
                )(x, train=train)
        if self.num_classes is None:
            return global_pool(x, self.pooling)
        x = jnp.mean(x, axis=(1, 2))
        x = Dropout(self.dropout)(x, deterministic=not train)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
        if self.aux_logits and train:
            return logits, aux["aux2"], aux["aux1"]
        return logits


def googlenet_param_groups(aux_logits: bool = False) -> list[tuple[str, str]]:
    """Ordered input -> output groups of regexes over '/'-joined param paths: stem, one group
    per Inception block (aux1 after inception4a, aux2 after inception4d, where they branch
    off), head. Aux groups only when `aux_logits`: a group matching nothing is an error."""
    groups = [("stem", r"^conv[123]/")]
    for name, *_ in INCEPTION_SETTING:
        groups.append((name, rf"^{name}/"))
        if aux_logits and name == "inception4a":
            groups.append(("aux1", r"^aux1/"))
        if aux_logits and name == "inception4d":
            groups.append(("aux2", r"^aux2/"))
    groups.append(("head", r"^fc/"))
    return groups
