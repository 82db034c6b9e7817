"""A tfds builder for small image datasets that load as one array: the digits and corruption
datasets of the domain-adaptation benchmarks (`digits.py`, `fashion_mnist_c.py`).

A subclass says how to load its images (uint8 [N, H, W, 1]) and labels, and how many examples
its validation and test splits take; the splits are cut by `hash_split.rank_split` on each
image's pixel bytes (a content key, so the same images land in the same split on any machine).
Images are stored as raw uint8 pixels (a tfds Tensor), as `fashion_mnist_local` stores them.
`_info` builds its DatasetInfo directly (see `rotten_tomatoes` for why).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from tlx.data import hash_split


def cut_splits(images: np.ndarray, validation: int, test: int) -> dict[str, np.ndarray]:
    """train / validation / test indices: `test` then `validation` examples by sha1(pixels)."""
    return hash_split.rank_split(
        (image.tobytes() for image in images), [("test", test), ("validation", validation)], "train"
    )


class ArrayImageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Subclasses set SHAPE, LABEL_NAMES, VALIDATION, TEST and DESCRIPTION, and `load`."""

    SHAPE: tuple[int, int, int] = (28, 28, 1)
    LABEL_NAMES: Sequence[str] = ()
    VALIDATION = 0  # examples in the validation split
    TEST = 0  # examples in the test split
    DESCRIPTION = ""
    HOMEPAGE = ""

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [N, *SHAPE], labels int [N]) of the whole dataset, in a fixed order."""
        raise NotImplementedError

    def split_keys(self, images: np.ndarray) -> np.ndarray:
        """The images whose pixels decide the splits (a corrupted copy: the clean originals)."""
        return images

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=self.SHAPE, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
                    ),
                    "label": tfds.features.ClassLabel(names=list(self.LABEL_NAMES)),
                    "id": tfds.features.Scalar(dtype=np.int64),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # local files; nothing to download
        images, labels = self.load()
        if images.dtype != np.uint8 or images.shape[1:] != tuple(self.SHAPE):
            raise ValueError(
                f"{self.name}: expected uint8 images of shape {self.SHAPE}, got {images.dtype} "
                f"{images.shape[1:]}."
            )
        splits = cut_splits(self.split_keys(images), self.VALIDATION, self.TEST)
        return {
            split: self._generate_examples(images, labels, splits[split])
            for split in ("train", "validation", "test")
        }

    def _generate_examples(self, images, labels, ids) -> Iterator[tuple[int, dict]]:
        for i in ids:
            yield int(i), {"image": images[i], "label": int(labels[i]), "id": int(i)}
