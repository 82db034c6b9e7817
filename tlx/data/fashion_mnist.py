"""tfds builder `fashion_mnist_local`: Fashion-MNIST from Debian's dataset-fashion-mnist files.

`apt-get install dataset-fashion-mnist` puts the four original idx files (gzipped) in
/usr/share/datasets/fashion-mnist/; `$TLX_FASHION_MNIST_DIR` may point at another folder with the
same four files. They are parsed with numpy (magic numbers, shapes and counts are checked) and
prepared once into the data_dir, without network or TensorFlow.

Splits: the 10,000 t10k images are `test`. The 60,000 training images are split into `train`
54,000 and `validation` 6,000: validation is the 6,000 images with the smallest sha1 of their
784 pixel bytes (`hash_split.rank_split`). A content hash rather than the file position, so the
rule gives the same validation images on any copy of Fashion-MNIST in any record order, e.g.
tfds's own `fashion_mnist`, whose records tfds has shuffled (see `image_sources`).

The name differs from tfds's `fashion_mnist` (same images, splits train/test only), so both can be
prepared in one data_dir. Images are stored as raw uint8 pixels (a tfds Tensor), not PNG as tfds's
`fashion_mnist` does: PIL's PNG encoder costs 0.15-0.45 ms an image (10-30 s for 70k), raw pixels
cost nothing to encode or decode, and take ~40 MB prepared instead of ~35 MB. Preparing takes
~15 s (tfds's writer). Caveats about tfds, as in `rotten_tomatoes`: `_info` builds its
DatasetInfo directly, and preparing needs `importlib_resources`.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from tlx.data import hash_split

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
ENV_DIR = "TLX_FASHION_MNIST_DIR"
FILES = {  # split of the original release -> (images, labels)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
COUNTS = {"train": 60_000, "t10k": 10_000}
NUM_VALIDATION = 6_000
LABEL_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # idx: 0x0000 0803 (ubyte, 3 dims), 0x0000 0801


def find_dir() -> Path:
    """The folder with the four idx files: $TLX_FASHION_MNIST_DIR if set, else Debian's."""
    folder = Path(os.environ.get(ENV_DIR) or DEBIAN_DIR)
    missing = [name for pair in FILES.values() for name in pair if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files {missing} not found in {folder} "
            f"(${ENV_DIR} {'= ' + repr(os.environ[ENV_DIR]) if os.environ.get(ENV_DIR) else 'unset'}"
            f"). Install them with `apt-get install dataset-fashion-mnist` (into {DEBIAN_DIR}), or "
            f"point ${ENV_DIR} at a folder holding {', '.join(n for p in FILES.values() for n in p)}."
        )
    return folder


def read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """An idx file (optionally gzipped) as a uint8 array, checking magic number and shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    found = int(np.frombuffer(data, ">u4", count=1)[0]) if len(data) >= 4 else None
    if found != magic:
        found = "a truncated file" if found is None else hex(found)
        raise ValueError(f"{path}: expected idx magic number {hex(magic)}, found {found}.")
    ndim = magic & 0xFF
    if len(data) < 4 * (1 + ndim):
        raise ValueError(f"{path}: truncated idx header ({len(data)} bytes).")
    header = np.frombuffer(data, ">u4", count=1 + ndim)
    dims = tuple(int(d) for d in header[1:])
    if dims != shape or len(data) != 4 * (1 + ndim) + int(np.prod(dims)):
        raise ValueError(
            f"{path}: expected shape {shape} ({int(np.prod(shape))} bytes of data), found dims "
            f"{dims} and {len(data) - 4 * (1 + ndim)} bytes."
        )
    return np.frombuffer(data, np.uint8, offset=4 * (1 + ndim)).reshape(dims)


def read_split(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of an original split, "train" or "t10k"."""
    images_file, labels_file = FILES[name]
    images = read_idx(folder / images_file, _IMAGES_MAGIC, (COUNTS[name], 28, 28))
    labels = read_idx(folder / labels_file, _LABELS_MAGIC, (COUNTS[name],))
    if labels.max() >= len(LABEL_NAMES):
        raise ValueError(f"{folder / labels_file}: label {labels.max()} out of range.")
    return images, labels


def validation_indices(images: np.ndarray) -> np.ndarray:
    """Sorted indices of the validation images among the 60,000 training images."""
    splits = hash_split.rank_split(
        (image.tobytes() for image in images), [("validation", NUM_VALIDATION)], rest="train"
    )
    return splits["validation"]


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST (Zalando, 28x28 grayscale, 10 classes) from local idx files."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Debian idx files; validation = 6,000 smallest sha1(pixels)."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Fashion-MNIST from local idx files: train 54,000 / validation 6,000 (by a hash "
                "of the pixels) / test 10,000. `id` is the image's position in its idx file."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(28, 28, 1), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
                    ),
                    "label": tfds.features.ClassLabel(names=list(LABEL_NAMES)),
                    "id": tfds.features.Scalar(dtype=np.int64),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # local files; nothing to download
        folder = find_dir()
        train_images, train_labels = read_split(folder, "train")
        test_images, test_labels = read_split(folder, "t10k")
        is_validation = np.zeros(len(train_images), bool)
        is_validation[validation_indices(train_images)] = True
        ids = np.arange(len(train_images))
        return {
            "train": self._generate_examples(train_images, train_labels, ids[~is_validation]),
            "validation": self._generate_examples(train_images, train_labels, ids[is_validation]),
            "test": self._generate_examples(test_images, test_labels, np.arange(len(test_images))),
        }

    def _generate_examples(self, images, labels, ids) -> Iterator[tuple[int, dict]]:
        for i in ids:
            yield int(i), {"image": images[i, :, :, None], "label": int(labels[i]), "id": int(i)}
