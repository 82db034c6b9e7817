"""Image-classification batches with grain: the same contracts as `text.py`, for pixels.

Training batches are a random-access, infinite `grain.MapDataset`: `ds[step]` is the global batch
of step `step`, a pure function of (seed, step): the example order from `sampling.EpochIndexBatches`
(one permutation per epoch), and each example's augmentation from `np.random.default_rng((seed, step, position))`,
so a killed run resumes by reading ds[s], and any worker computes any batch. Evaluation batches
resize the shorter side and centre-crop, in source order, padded to full batches with weight-0
rows.

The pipeline draws each step's example *indices* (`sampling.EpochIndexBatches`); one map reads, crops, resizes and
normalises a whole batch (a per-example map costs grain ~40-100 us of bookkeeping an example).
Everything here is numpy and PIL: grain's worker processes import JAX only because grain itself
does (when installed), and never initialise a JAX backend, so they open no GPU.

Pixels (per `preprocess.ImagePreprocessing`): uint8 HWC, 1 channel (grayscale, repeated to 3) or
3 (RGB; a 4th, alpha, is dropped); PIL resize and crop in torchvision's order, which gives
torchvision's pixels exactly (one `Image.resize(box=...)` call would save a little work on large
images but rounds ~2% of the pixels one level differently); BGR flips the channels; then
`x / 255 * (hi - lo) + lo` and `(x - mean) / std`, with mean and std in the *output* channel order
(BGR means for a BGR model, as Keras' caffe means are).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import grain
import numpy as np
from PIL import Image

from tlx.data.preprocess import ImagePreprocessing
from tlx.data.sampling import (
    ONE_PROCESS,
    CacheableExamples,
    Shard,
    check_sizes,
    train_index_batches,
)

AUGMENTATIONS = ("random_resized_crop", "crop", "flip", "none")
_RATIO = (3 / 4, 4 / 3)  # torchvision RandomResizedCrop's aspect-ratio range


class ArrayImageSource:
    """Random-access split of `{"image": uint8 [H, W, C], "label": int}` held as one array.

    For small fixed-size datasets (Fashion-MNIST 55 MB, CIFAR-10 184 MB): decoded once, read in
    ~1 us. `labels` is public so that subsets can be stratified without reading images.
    """

    def __init__(self, images: np.ndarray, labels: Sequence[int], name: str = "", split: str = ""):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"Need uint8 images [N, H, W, C] and N labels; got {images.dtype} "
                f"{images.shape} and {len(labels)} labels."
            )
        self.images = images
        self.labels = np.asarray(labels, np.int32)
        self.name = name
        self.split = split

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": int(self.labels[index])}

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.images.shape[1:]))
        return f"ArrayImageSource({self.name!r}, split={self.split!r}, {len(self)} x {shape})"


def source_labels(source) -> np.ndarray:
    """Every example's label: `source.labels` when the source has it, else read one by one."""
    labels = getattr(source, "labels", None)
    if labels is None:
        labels = [source[i]["label"] for i in range(len(source))]
    return np.asarray(labels, np.int64)


class Subset:
    """Random-access view of a class-stratified random subset of `source` (in source order).

    Each class gets its share of `num_examples` in proportion to its frequency (largest
    remainders, ties to the lower class id), i.e. exactly num_examples / num_classes per class
    on a balanced dataset such as Fashion-MNIST or CIFAR-10; within a class the examples are a
    uniform random draw with `seed`.
    """

    def __init__(self, source, num_examples: int, seed: int):
        if not 0 < num_examples <= len(source):
            raise ValueError(f"num_examples={num_examples}, but the source has {len(source)}.")
        labels = source_labels(source)
        classes, counts = np.unique(labels, return_counts=True)
        exact = num_examples * counts / len(labels)
        quota = np.floor(exact).astype(np.int64)
        remainder_order = sorted(range(len(classes)), key=lambda c: (quota[c] - exact[c], c))
        for c in remainder_order[: num_examples - quota.sum()]:
            quota[c] += 1
        rng = np.random.default_rng(seed)
        chosen = [
            rng.permutation(np.flatnonzero(labels == label))[:n] for label, n in zip(classes, quota)
        ]
        self.source = source
        self.indices = np.sort(np.concatenate(chosen))
        self.labels = labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.source[int(self.indices[index])]


def resample(interpolation: str) -> Image.Resampling:
    try:
        return Image.Resampling[interpolation.upper()]
    except KeyError:
        names = [r.name.lower() for r in Image.Resampling]
        raise ValueError(f"Unknown interpolation {interpolation!r}; PIL has {names}.") from None


def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 [H, W, 1 | 3 | 4] (or [H, W]) -> a PIL image, mode L or RGB (alpha dropped)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"Images must be uint8, got {image.dtype}.")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, :3]
    elif image.ndim != 2:
        raise ValueError(f"Images must be [H, W, 1 | 3 | 4], got shape {image.shape}.")
    return Image.fromarray(np.ascontiguousarray(image))


def resized_size(width: int, height: int, resize_size: int) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side becomes resize_size, the longer
    int(resize_size * long / short)."""
    if width <= height:
        return resize_size, int(resize_size * height / width)
    return int(resize_size * width / height), resize_size


def centre_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """torchvision's CenterCrop(size): starts at int(round((side - size) / 2))."""
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return (left, top, left + size, top + size)


def random_box(width: int, height: int, rng: np.random.Generator, scale) -> tuple[int, ...]:
    """torchvision's RandomResizedCrop.get_params (area in `scale`, ratio 3/4..4/3) with numpy.

    Ten tries at a crop that fits, then the whole image clamped to the ratio range, centred.
    """
    area = width * height
    log_ratio = (math.log(_RATIO[0]), math.log(_RATIO[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return (left, top, left + w, top + h)
    in_ratio = width / height
    if in_ratio < _RATIO[0]:
        w, h = width, int(round(width / _RATIO[0]))
    elif in_ratio > _RATIO[1]:
        w, h = int(round(height * _RATIO[1])), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return (left, top, left + w, top + h)


class Normalise:
    """uint8 [B, S, S, 3] -> float32, `(x / 255 * (hi - lo) + lo - mean) / std` per channel.

    Folded into one multiply-add, `x * a + b`, over rows of S * 3 values: numpy broadcasting
    along a last axis of 3 runs ~5x slower than along a long row.
    """

    def __init__(self, p: ImagePreprocessing):
        lo, hi = p.value_range
        std = np.asarray(p.std, np.float64)
        a = (hi - lo) / 255.0 / std
        b = (lo - np.asarray(p.mean, np.float64)) / std
        self.a = np.tile(a.astype(np.float32), p.image_size)
        self.b = np.tile(b.astype(np.float32), p.image_size)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        batch, size = pixels.shape[:2]
        out = np.multiply(pixels.reshape(batch * size, -1), self.a, dtype=np.float32)
        out += self.b
        return out.reshape(pixels.shape)


class MakeImageBatch:
    """(step, example indices) -> one batch of numpy arrays (the map of the grain pipeline).

    `augment=None` is evaluation: resize + centre crop, and with `batch_size` set, a short final
    batch is filled with zero rows of weight 0 (zeros, not NaN, so that weight 0 cancels them).

    With a `shard` of several processes, `indices` are still the global batch's and the batch is
    the shard's rows of it (evaluation: batch_size / count rows); an example's augmentation is
    drawn from its position in the global batch, so the processes together build the batch one
    process builds, each decoding only its own images.
    """

    def __init__(
        self,
        source,
        p: ImagePreprocessing,
        *,
        augment: str | None = None,
        seed: int = 0,
        crop_scale: tuple[float, float] = (0.35, 1.0),
        batch_size: int | None = None,
        shard: Shard = ONE_PROCESS,
    ):
        if batch_size is not None:
            shard.rows(batch_size, "eval batch size")
        if augment is not None and augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}.")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}.")
        self.source = source
        self.p = p
        self.augment = augment
        self.seed = seed
        self.crop_scale = tuple(crop_scale)
        self.batch_size = batch_size
        self.shard = shard
        self.resample = resample(p.interpolation)
        self.normalise = Normalise(p)

    def crop(self, image: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """One example: uint8 [S, S] (grayscale) or [S, S, 3], cropped, resized, maybe flipped."""
        pil = to_pil(image)
        size = self.p.image_size
        if self.augment in ("random_resized_crop", "crop"):
            box = random_box(pil.width, pil.height, rng, self.crop_scale)
            pil = pil.crop(box).resize((size, size), self.resample)
        else:
            resized = resized_size(pil.width, pil.height, self.p.resize_size)
            pil = pil.resize(resized, self.resample)
            pil = pil.crop(centre_crop_box(*resized, size))
        if self.augment in ("random_resized_crop", "flip") and rng.random() < 0.5:
            pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.asarray(pil)

    def __call__(self, step: int, indices: np.ndarray) -> dict:
        size = self.p.image_size
        rows = len(indices) if self.batch_size is None else self.batch_size
        first = 0  # the global batch position of indices[0]
        if self.shard.count > 1:
            part = self.shard.rows(rows)
            indices, first, rows = np.asarray(indices)[part], part.start, rows // self.shard.count
        pixels = np.zeros((rows, size, size, 3), np.uint8)
        labels = np.zeros(rows, np.int32)
        train = self.augment not in (None, "none")
        channels = (2, 1, 0) if self.p.channel_order == "BGR" else (0, 1, 2)
        for position, index in enumerate(indices):
            example = self.source[int(index)]
            rng = np.random.default_rng((self.seed, step, first + position)) if train else None
            out = self.crop(example["image"], rng)
            # One plane at a time: numpy copies into a last axis of 3 ~7x slower than this.
            if out.ndim == 2:
                for c in range(3):
                    pixels[position, :, :, c] = out
            elif channels == (0, 1, 2):
                pixels[position] = out
            else:
                for c, source_c in enumerate(channels):
                    pixels[position, :, :, c] = out[:, :, source_c]
            labels[position] = example["label"]
        images = self.normalise(pixels)
        if len(indices) < rows:
            images[len(indices) :] = 0.0
        batch = {"image": images, "label": labels}
        if self.batch_size is not None:
            batch["weight"] = (np.arange(rows) < len(indices)).astype(np.float32)
        return batch


def make_image_train_batches(
    source,
    preprocessing: ImagePreprocessing,
    *,
    batch_size: int,
    seed: int,
    num_examples: int | None = None,
    subset_seed: int | None = None,
    augment: str = "random_resized_crop",
    crop_scale: tuple[float, float] = (0.35, 1.0),
    shard: Shard = ONE_PROCESS,
) -> grain.MapDataset:
    """Infinite random-access training batches: `ds[step]` is the global batch of that step
    (with a `shard` of several processes, that process's rows of it: see `MakeImageBatch`).

    Batches: image float32 [B, S, S, 3] (S = preprocessing.image_size), label int32 [B].
    Deterministic in (seed, step); every epoch is a new permutation, and a batch may span two
    epochs. `augment`: "random_resized_crop" (torchvision's RandomResizedCrop with `crop_scale`
    and ratio 3/4..4/3, then a horizontal flip with probability 1/2), "crop" (the same crop, never
    flipped: digits and text, which a mirror changes), "flip" (the evaluation resize + centre
    crop, then the flip) or "none" (the evaluation transform).

    `num_examples` trains on a class-stratified random subset of that many examples (the "1,000
    labels" of data-efficiency studies; see `Subset`), drawn with `subset_seed`, which defaults to
    `seed`: by default each seed sees its own subset, so the spread over seeds includes the choice
    of labelled examples; pass a fixed subset_seed to compare runs on one subset.
    """
    source = _training_source(source, batch_size, seed, num_examples, subset_seed)
    make_batch = MakeImageBatch(
        source, preprocessing, augment=augment, seed=seed, crop_scale=crop_scale, shard=shard
    )
    return train_index_batches(len(source), batch_size, seed).map_with_index(make_batch)


def _training_source(source, batch_size: int, seed: int, num_examples, subset_seed):
    check_sizes(source, batch_size)
    if num_examples is not None:
        source = Subset(source, num_examples, seed if subset_seed is None else subset_seed)
    return source


def image_cacheable_examples(
    source,
    preprocessing: ImagePreprocessing,
    *,
    batch_size: int,
    seed: int,
    num_examples: int | None = None,
    subset_seed: int | None = None,
    recipe: str = "",
) -> CacheableExamples:
    """The examples of `make_image_train_batches(..., augment="none")` as fixed inputs."""
    source = _training_source(source, batch_size, seed, num_examples, subset_seed)
    make_batch = MakeImageBatch(source, preprocessing, augment="none")
    return CacheableExamples(
        num_examples=len(source),
        index_batches=train_index_batches(len(source), batch_size, seed),
        make_batch=lambda indices: make_batch(0, indices),
        recipe=f"{recipe} {preprocessing} subset={num_examples},{subset_seed},{seed}",
    )


def make_image_eval_batches(
    source, preprocessing: ImagePreprocessing, *, batch_size: int, shard: Shard = ONE_PROCESS
) -> grain.MapDataset:
    """Finite batches in source order, every example exactly once (supports len, [i], iteration).

    Resize of the shorter side to resize_size, centre crop of image_size. Like training batches
    plus `weight` float32 [B]: 1 for real examples, 0 for the zero rows that fill the last batch.
    A lazy sequence rather than a list: the 10,000 Fashion-MNIST test images at 224 are 6 GB of
    float32. With a `shard` of several processes, each batch is that process's rows of it.
    """
    check_sizes(source, batch_size)
    make_batch = MakeImageBatch(source, preprocessing, batch_size=batch_size, shard=shard)
    return grain.MapDataset.range(len(source)).batch(batch_size).map_with_index(make_batch)
