"""`fashion_mnist_m`: Fashion-MNIST's test items on real photo backgrounds, the MNIST-M recipe.

Ganin and Lempitsky (2015) made MNIST-M, the classic target of domain-adversarial training, by
blending each MNIST digit into a random patch of a colour photo, out = |patch - digit| per pixel:
the shapes stay, the black background becomes texture and the bright strokes invert over bright
parts of the photo. Here the same rule on Fashion-MNIST, kept single-channel so the source
model reads it unchanged: each item is blended into a grey crop of one of scikit-learn's two
sample photos (china.jpg, flower.jpg; the photos FashionDet's scenes are made on), a random
square of 28-112 px resized to 28, flipped at random.

Which images: the 10,000 clean test images, cut by sha1 of their *clean* pixels into train 4,000
(the unlabelled target stream) / validation 1,000 / test 5,000, exactly as the corrupted
Fashion-MNIST targets (`fashion_mnist_c.py`), so every shift of the benchmark scores the same
5,000 items. Image i's patch is drawn from a generator seeded with sha1("fashion_mnist_m/<i>"):
the same pixels on every machine.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import tensorflow_datasets as tfds

from tlx.data.fashion_mnist_c import ShiftedFashionMnistTest
from tlx.data.fashiondet import backgrounds
from tlx.data.resize import resize_bilinear

NAME = "fashion_mnist_m"
PATCH_SIDES = (28, 112)  # the square cut from a photo, before resizing to the item's 28 px


@functools.cache  # converted once, not once per patch
def grey_photos() -> tuple[np.ndarray, ...]:
    """The sample photos as uint8 [H, W] luminance (ITU-R 601 weights, as PIL's "L" mode)."""
    weights = np.asarray([0.299, 0.587, 0.114], np.float32)
    return tuple(np.rint(photo @ weights).astype(np.uint8) for photo in backgrounds())


def patch(index: int, side: int = 28) -> np.ndarray:
    """Image `index`'s background: uint8 [side, side], a pure function of the index."""
    seed = int.from_bytes(hashlib.sha1(f"{NAME}/{index}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    photos = grey_photos()
    photo = photos[int(rng.integers(len(photos)))]
    crop = int(rng.integers(PATCH_SIDES[0], PATCH_SIDES[1] + 1))
    top = int(rng.integers(0, photo.shape[0] - crop + 1))
    left = int(rng.integers(0, photo.shape[1] - crop + 1))
    square = resize_bilinear(photo[top : top + crop, left : left + crop, None], side, side)[..., 0]
    return square[:, ::-1] if rng.random() < 0.5 else square


def blend(items: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 1] items -> |patch_i - item_i|, the same shape (MNIST-M's rule)."""
    out = np.empty_like(items)
    for i, item in enumerate(items):
        background = patch(i, item.shape[0]).astype(np.int16)
        out[i, ..., 0] = np.abs(background - item[..., 0].astype(np.int16)).astype(np.uint8)
    return out


class FashionMnistMLocal(ShiftedFashionMnistTest):
    """Fashion-MNIST test items blended into photo patches (MNIST-M's construction)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "|grey photo patch - item| on the t10k images; splits by sha1(clean)."
    }
    DESCRIPTION = (
        "Fashion-MNIST's 10,000 test images blended into grey patches of scikit-learn's sample "
        "photos, out = |patch - item| (MNIST-M's rule): train 4,000 / validation 1,000 / test "
        "5,000 by sha1 of the clean pixels."
    )
    HOMEPAGE = "https://arxiv.org/abs/1409.7495"

    def shift(self, clean):
        return blend(clean)
