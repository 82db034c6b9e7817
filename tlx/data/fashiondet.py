"""FashionDet: synthetic detection scenes of Fashion-MNIST items on real photos, with exact boxes.

Each scene is a pure function of (seed, split, index): no files are written, any example can be
drawn in any order (grain's random access, exact resume), and the same arguments give the same
pixels on every machine. A scene is a crop of a real photo (scikit-learn's two sample images,
flipped and dimmed at random) with 1 to `max_objects` items pasted on it, each scaled by 1.5-3.5x
(42-98 px at 28 px per item), its box the tight box of its non-zero pixels. Items never overlap
(a placement that would touch an earlier box is retried, then skipped), so every object is fully
visible and nothing unlabelled looks like an object.

Items come from the matching Fashion-MNIST split: train scenes from the 54,000 training images,
validation scenes from the 6,000 validation images (tlx.data.fashion_mnist's content-hash split)
and test scenes from the 10,000 test images, so no item is seen in two splits.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tlx.data import fashion_mnist
from tlx.data.resize import resize_bilinear

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
LABEL_NAMES = fashion_mnist.LABEL_NAMES
SCALES = (1.5, 3.5)  # item size: 28 px times this
PLACEMENT_TRIES = 20


@functools.cache
def split_items(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels [N]) of the Fashion-MNIST items a split's scenes use."""
    folder = fashion_mnist.find_dir()
    if split == "test":
        return fashion_mnist.read_split(folder, "t10k")
    images, labels = fashion_mnist.read_split(folder, "train")
    validation = fashion_mnist.validation_indices(images)
    if split == "validation":
        return images[validation], labels[validation]
    keep = np.ones(len(images), bool)
    keep[validation] = False
    return images[keep], labels[keep]


@functools.cache
def backgrounds() -> tuple[np.ndarray, ...]:
    """scikit-learn's sample photos (china.jpg, flower.jpg; 427 x 640 RGB), uint8."""
    from sklearn.datasets import load_sample_images

    return tuple(np.asarray(image, np.uint8) for image in load_sample_images().images)


@dataclasses.dataclass(frozen=True)
class Scene:
    image: np.ndarray  # uint8 [size, size, 3]
    boxes: np.ndarray  # float32 [N, 4] xyxy pixels, tight around each item
    labels: np.ndarray  # int64 [N] Fashion-MNIST classes


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    photo = backgrounds()[rng.integers(len(backgrounds()))]
    side = int(rng.integers(size, min(photo.shape[:2]) + 1))
    top = int(rng.integers(0, photo.shape[0] - side + 1))
    left = int(rng.integers(0, photo.shape[1] - side + 1))
    crop = resize_bilinear(photo[top : top + side, left : left + side], size, size)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    # Dimmed, so the bright items stand out as on Fashion-MNIST's black.
    return (crop.astype(np.float32) * rng.uniform(0.3, 0.7)).astype(np.uint8)


def _overlaps(box, boxes) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)


def scene(split: str, index: int, seed: int = 0, size: int = 128, max_objects: int = 4) -> Scene:
    """Scene `index` of `split` for `seed`: the same arguments always give the same scene."""
    if split not in SPLIT_CODES:
        raise ValueError(f"split {split!r}: expected one of {tuple(SPLIT_CODES)}")
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    items, item_labels = split_items(split)
    canvas = _background(rng, size).astype(np.float32)
    boxes, labels = [], []
    count = int(rng.integers(1, max_objects + 1)) if max_objects > 0 else 0  # 0: background only
    for _ in range(count):
        which = int(rng.integers(len(items)))
        side = min(int(round(28 * rng.uniform(*SCALES))), size)  # small scenes: items fit
        item = resize_bilinear(items[which][..., None], side, side)[..., 0]
        ys, xs = np.nonzero(item)
        if len(ys) == 0:
            continue
        for _ in range(PLACEMENT_TRIES):
            top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
            box = (left + xs.min(), top + ys.min(), left + xs.max() + 1, top + ys.max() + 1)
            if not _overlaps(box, boxes):
                break
        else:
            continue  # no room left for this item: it is not placed at all
        # The item's grey level is both its colour and its opacity: black stays see-through.
        value = item.astype(np.float32)[..., None]
        alpha = value / 255
        region = canvas[top : top + side, left : left + side]
        canvas[top : top + side, left : left + side] = region * (1 - alpha) + alpha * value
        boxes.append(box)
        labels.append(int(item_labels[which]))
    return Scene(
        image=np.clip(np.rint(canvas), 0, 255).astype(np.uint8),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
    )


@dataclasses.dataclass(frozen=True)
class FashionDetSource:
    """Random-access scenes of one split (a grain data source): len() scenes, [i] -> a dict with
    "image", "boxes", "labels"."""

    split: str
    length: int
    seed: int = 0
    size: int = 128
    max_objects: int = 4

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"scene {index} of {self.length}")
        s = scene(self.split, int(index), self.seed, self.size, self.max_objects)
        return {"image": s.image, "boxes": s.boxes, "labels": s.labels}
