"""Inception v3 (torchvision's and keras.applications' architecture) in flax.linen, NHWC.

One module serves both checkpoint families. Submodule names mirror torchvision's attributes
(`Conv2d_1a_3x3/conv`, `Mixed_5b/branch5x5_1/bn`, `AuxLogits/conv0`, `fc`), so torchvision's state
dict converts one-to-one and keras.applications' auto-numbered layers are paired with them by
creation order (tlx/weights/keras_inception.py). The two families differ in one place that is not
a weight: the 3x3 stride-1 average pools inside the Mixed blocks. torchvision's
`F.avg_pool2d(x, 3, 1, padding=1)` counts the zero padding in the divisor, Keras/TF's
`AveragePooling2D(padding="same")` does not; `avg_pool_count_include_pad` picks which (True for
torchvision weights, False for Keras weights). Eval-mode equality with both is proven in
tests/models/test_inception_v3.py and tests/models/test_keras_inception_v3.py.

The stem's outputs and each Mixed block's are sown into the `intermediates` collection under the
names in INCEPTION_V3_ENDPOINTS: `model.apply(variables, x, mutable=["intermediates"])`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tlx.models.dropout import Dropout
from tlx.models.pooling import check_pooling, global_pool

# Block boundaries sown into the "intermediates" collection, in forward order: the output of
# torchvision's child module of that name (forward hooks give the reference), with `_out` added
# where that name is also ours for the submodule, because flax refuses a sown name equal to a
# submodule's ("Duplicate use of scope name"); GoogLeNet does the same. The max pools are no
# modules here, so they keep torchvision's names.
INCEPTION_V3_ENDPOINTS = (
    "Conv2d_1a_3x3_out",
    "Conv2d_2a_3x3_out",
    "Conv2d_2b_3x3_out",
    "maxpool1",
    "Conv2d_3b_1x1_out",
    "Conv2d_4a_3x3_out",
    "maxpool2",
    "Mixed_5b_out",
    "Mixed_5c_out",
    "Mixed_5d_out",
    "Mixed_6a_out",
    "Mixed_6b_out",
    "Mixed_6c_out",
    "Mixed_6d_out",
    "Mixed_6e_out",
    "Mixed_7a_out",
    "Mixed_7b_out",
    "Mixed_7c_out",
)

STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
MIXED_BLOCKS = (
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU; torchvision's BasicConv2d, Keras' conv2d_bn.

    Padding is explicit and symmetric like torchvision's; for the odd kernels at stride 1 this is
    also Keras' 'same', and every stride-2 conv is unpadded ('valid') in both.
    """

    features: int
    kernel_size: int | tuple[int, int]
    strides: int = 1
    padding: int | tuple[int, int] = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        ph, pw = _pair(self.padding)
        x = nn.Conv(
            self.features,
            _pair(self.kernel_size),
            strides=_pair(self.strides),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            dtype=self.dtype,
            name="conv",
        )(x)
        x = nn.BatchNorm(
            momentum=0.9,  # torch's momentum=0.1, Keras' 0.99; matters only when training
            epsilon=1e-3,
            dtype=self.dtype,
            name="bn",
        )(x, use_running_average=not train)  # at call time: interceptable
        return nn.relu(x)


def _avg_pool_3x3(x, count_include_pad: bool):
    return nn.avg_pool(
        x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=count_include_pad
    )


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b-5d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    pool_features: int
    count_include_pad: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        def conv(name, *args, **kwargs):
            return BasicConv2d(*args, **kwargs, dtype=self.dtype, name=name)

        b1 = conv("branch1x1", 64, 1)(x, train=train)
        b5 = conv("branch5x5_1", 48, 1)(x, train=train)
        b5 = conv("branch5x5_2", 64, 5, padding=2)(b5, train=train)
        b3 = conv("branch3x3dbl_1", 64, 1)(x, train=train)
        b3 = conv("branch3x3dbl_2", 96, 3, padding=1)(b3, train=train)
        b3 = conv("branch3x3dbl_3", 96, 3, padding=1)(b3, train=train)
        bp = _avg_pool_3x3(x, self.count_include_pad)
        bp = conv("branch_pool", self.pool_features, 1)(bp, train=train)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        def conv(name, *args, **kwargs):
            return BasicConv2d(*args, **kwargs, dtype=self.dtype, name=name)

        b3 = conv("branch3x3", 384, 3, strides=2)(x, train=train)
        bd = conv("branch3x3dbl_1", 64, 1)(x, train=train)
        bd = conv("branch3x3dbl_2", 96, 3, padding=1)(bd, train=train)
        bd = conv("branch3x3dbl_3", 96, 3, strides=2)(bd, train=train)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block (Mixed_6b-6e) with factorised 7x7 convs (1x7 and 7x1)."""

    channels_7x7: int
    count_include_pad: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        def conv(name, *args, **kwargs):
            return BasicConv2d(*args, **kwargs, dtype=self.dtype, name=name)

        c7 = self.channels_7x7
        b1 = conv("branch1x1", 192, 1)(x, train=train)
        b7 = conv("branch7x7_1", c7, 1)(x, train=train)
        b7 = conv("branch7x7_2", c7, (1, 7), padding=(0, 3))(b7, train=train)
        b7 = conv("branch7x7_3", 192, (7, 1), padding=(3, 0))(b7, train=train)
        bd = conv("branch7x7dbl_1", c7, 1)(x, train=train)
        bd = conv("branch7x7dbl_2", c7, (7, 1), padding=(3, 0))(bd, train=train)
        bd = conv("branch7x7dbl_3", c7, (1, 7), padding=(0, 3))(bd, train=train)
        bd = conv("branch7x7dbl_4", c7, (7, 1), padding=(3, 0))(bd, train=train)
        bd = conv("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))(bd, train=train)
        bp = _avg_pool_3x3(x, self.count_include_pad)
        bp = conv("branch_pool", 192, 1)(bp, train=train)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        def conv(name, *args, **kwargs):
            return BasicConv2d(*args, **kwargs, dtype=self.dtype, name=name)

        b3 = conv("branch3x3_1", 192, 1)(x, train=train)
        b3 = conv("branch3x3_2", 320, 3, strides=2)(b3, train=train)
        b7 = conv("branch7x7x3_1", 192, 1)(x, train=train)
        b7 = conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(b7, train=train)
        b7 = conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(b7, train=train)
        b7 = conv("branch7x7x3_4", 192, 3, strides=2)(b7, train=train)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block (Mixed_7b, 7c) with the expanded 1x3 / 3x1 filter banks."""

    count_include_pad: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        def conv(name, *args, **kwargs):
            return BasicConv2d(*args, **kwargs, dtype=self.dtype, name=name)

        b1 = conv("branch1x1", 320, 1)(x, train=train)
        b3 = conv("branch3x3_1", 384, 1)(x, train=train)
        b3 = jnp.concatenate(
            [
                conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))(b3, train=train),
                conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))(b3, train=train),
            ],
            axis=-1,
        )
        bd = conv("branch3x3dbl_1", 448, 1)(x, train=train)
        bd = conv("branch3x3dbl_2", 384, 3, padding=1)(bd, train=train)
        bd = jnp.concatenate(
            [
                conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))(bd, train=train),
                conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))(bd, train=train),
            ],
            axis=-1,
        )
        bp = _avg_pool_3x3(x, self.count_include_pad)
        bp = conv("branch_pool", 192, 1)(bp, train=train)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on Mixed_6e (training-time regulariser; needs a >= 17x17 map, i.e.
    299x299 inputs): avgpool 5/3 -> 1x1 -> 5x5 -> global mean -> fc."""

    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = nn.avg_pool(x, (5, 5), strides=(3, 3), padding="VALID")
        x = BasicConv2d(128, 1, dtype=self.dtype, name="conv0")(x, train=train)
        x = BasicConv2d(768, 5, dtype=self.dtype, name="conv1")(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


class InceptionV3(nn.Module):
    """Inception v3. Eval returns logits; train with `aux_logits` returns (logits, aux_logits)
    like torchvision's InceptionOutputs. `num_classes=None` drops the classifier and returns the
    `pooling` ("avg" | "max") of the Mixed_7c map, or the map itself with pooling=None."""

    num_classes: int | None = 1000
    pooling: str | None = "avg"
    aux_logits: bool = False
    transform_input: bool = False  # torchvision's remap of ImageNet-normalised input to [-1, 1]
    avg_pool_count_include_pad: bool = True  # True: torchvision weights; False: Keras weights
    dropout: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        check_pooling(self.pooling)
        if self.aux_logits and self.num_classes is None:
            raise ValueError("aux_logits=True needs num_classes (the aux head is a classifier)")
        x = x.astype(self.dtype)
        if self.transform_input:
            # The Google checkpoint expects (x - 0.5) / 0.5 of [0, 1] pixels; undo ImageNet's
            # mean/std normalisation and apply that instead, per channel.
            mean = jnp.array([0.485, 0.456, 0.406], self.dtype)
            std = jnp.array([0.229, 0.224, 0.225], self.dtype)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5

        def stem(name, *args, **kwargs):
            y = BasicConv2d(*args, **kwargs, dtype=self.dtype, name=name)(x, train=train)
            self.sow("intermediates", f"{name}_out", y)
            return y

        x = stem("Conv2d_1a_3x3", 32, 3, strides=2)
        x = stem("Conv2d_2a_3x3", 32, 3)
        x = stem("Conv2d_2b_3x3", 64, 3, padding=1)
        x = _max_pool_3x3_s2(x)
        self.sow("intermediates", "maxpool1", x)
        x = stem("Conv2d_3b_1x1", 80, 1)
        x = stem("Conv2d_4a_3x3", 192, 3)
        x = _max_pool_3x3_s2(x)
        self.sow("intermediates", "maxpool2", x)

        pad = self.avg_pool_count_include_pad
        blocks = {
            "Mixed_5b": InceptionA(32, pad, self.dtype, name="Mixed_5b"),
            "Mixed_5c": InceptionA(64, pad, self.dtype, name="Mixed_5c"),
            "Mixed_5d": InceptionA(64, pad, self.dtype, name="Mixed_5d"),
            "Mixed_6a": InceptionB(self.dtype, name="Mixed_6a"),
            "Mixed_6b": InceptionC(128, pad, self.dtype, name="Mixed_6b"),
            "Mixed_6c": InceptionC(160, pad, self.dtype, name="Mixed_6c"),
            "Mixed_6d": InceptionC(160, pad, self.dtype, name="Mixed_6d"),
            "Mixed_6e": InceptionC(192, pad, self.dtype, name="Mixed_6e"),
            "Mixed_7a": InceptionD(self.dtype, name="Mixed_7a"),
            "Mixed_7b": InceptionE(pad, self.dtype, name="Mixed_7b"),
            "Mixed_7c": InceptionE(pad, self.dtype, name="Mixed_7c"),
        }
        aux = None
        for name, block in blocks.items():
            x = block(x, train=train)
            self.sow("intermediates", f"{name}_out", x)
            if name == "Mixed_6e" and self.aux_logits:
                # Like torchvision, run only in train. Init always creates its params, from a
                # 17x17 placeholder (its smallest valid map, 299x299 inputs) so that a model can
                # be initialised at any input size; its shapes do not depend on the map's size.
                head = InceptionAux(self.num_classes, self.dtype, name="AuxLogits")
                if self.is_initializing():
                    head(jnp.zeros((x.shape[0], 17, 17, x.shape[-1]), x.dtype), train=train)
                elif train:
                    aux = head(x, train=True)

        if self.num_classes is None:
            return global_pool(x, self.pooling)
        x = jnp.mean(x, axis=(1, 2))
        x = Dropout(self.dropout)(x, deterministic=not train)
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
        if train and self.aux_logits:
            return x, aux
        return x


def inception_v3_param_groups(
    aux_logits: bool = False, include_top: bool = True
) -> list[tuple[str, str]]:
    """Ordered input -> output groups of regexes over '/'-joined param paths: stem (Conv2d_1a ..
    Conv2d_4a), one group per Mixed block, "aux" (AuxLogits, branching off Mixed_6e, so placed
    right after it) when `aux_logits`, and "head" (fc) when `include_top` (num_classes set)."""
    groups = [("stem", rf"^(?:{'|'.join(STEM)})/")]
    for name in MIXED_BLOCKS:
        groups.append((name, rf"^{name}/"))
        if name == "Mixed_6e" and aux_logits:
            groups.append(("aux", r"^AuxLogits/"))
    if include_top:
        groups.append(("head", r"^fc/"))
    return groups
