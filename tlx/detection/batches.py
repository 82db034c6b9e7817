"""Detection batches with grain: images with their boxes, prepared together, static shapes.

An example is ``{"image": uint8 [H, W, C], "boxes": float32 [N, 4] xyxy pixels, "labels": [N]}``
(FashionDet's scenes; `TfdsDetectionSource` adapts tfds detection records). A batch holds
"image" float32 [B, S, S, 3] (tlx.detection.inputs: plain resize or letterbox, /255), "boxes"
[B, G, 4] in the model input's pixels, "labels" [B, G], "box_mask" [B, G] (False: padding),
"box_difficult" [B, G] (an example's optional "difficult" flags: ignored by evaluation) and
"weight" [B] (0: a padding row of an evaluation batch); G = `max_boxes` for every batch, so one
compiled step serves them all. An image with more than `max_boxes` boxes is an error naming it:
dropping boxes would teach the detector that real objects are background.

Training batches are random access and a pure function of (seed, step), as the classification
pipelines (tlx.data.images): the example order from `sampling.EpochIndexBatches`, each example's
augmentation from `np.random.default_rng((seed, step, position))`. Augmentations keep the boxes
right: "flip" mirrors half the images (and their boxes) left-right; "flip_color" also scales
exposure and saturation by up to 1.5x either way, darknet's default jitter (boxes unchanged);
"flip_color_crop" first cuts a random window (each side 60-100% of the image's, anywhere), the
boxes clipped to it, as darknet's `jitter` does: scale and position vary, which small datasets
need most (a box the window cuts to a sliver under 2 px is left out).
"""

from __future__ import annotations

import grain
import numpy as np

from tlx.data.preprocess import DetectorInput
from tlx.data.sampling import ONE_PROCESS, Shard, check_sizes, train_index_batches
from tlx.detection.inputs import prepare_image

AUGMENTATIONS = ("none", "flip", "flip_color", "flip_color_crop")
CROP_SIDE = (0.6, 1.0)  # flip_color_crop: each side of the window, a fraction of the image's
MIN_CROPPED_SIDE = 2.0  # pixels: a box cut thinner than this by the window is left out
COLOR_JITTER = 1.5  # darknet's exposure= and saturation=: a factor in [1/1.5, 1.5]
GREY_WEIGHTS = np.asarray([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma


class TfdsDetectionSource:
    """A tfds detection split (objects/bbox as tfds BBoxes, objects/label) as examples with
    pixel boxes; random access, like the data source it wraps."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, index: int) -> dict:
        record = self.data_source[index]
        image = np.asarray(record["image"])
        height, width = image.shape[:2]
        bbox = np.asarray(record["objects"]["bbox"], np.float32).reshape(-1, 4)
        ymin, xmin, ymax, xmax = bbox.T
        boxes = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], -1)
        labels = np.asarray(record["objects"]["label"], np.int64).reshape(-1)
        objects = record["objects"]  # tfds's voc calls the flag is_difficult
        flags = objects.get("difficult", objects.get("is_difficult", np.zeros(len(labels))))
        difficult = np.asarray(flags, bool).reshape(-1)
        return {"image": image, "boxes": boxes, "labels": labels, "difficult": difficult}


def flip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-right mirror of a [S, S, 3] input and its xyxy boxes (in its pixels)."""
    width = image.shape[1]
    mirrored = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], -1)
    return image[:, ::-1], mirrored.astype(np.float32)


def random_crop(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, difficult, rng):
    """A random window of a uint8 image (each side CROP_SIDE of the image's) and its boxes,
    clipped and shifted; boxes left thinner than MIN_CROPPED_SIDE pixels are dropped."""
    height, width = image.shape[:2]
    h = max(1, int(round(height * rng.uniform(*CROP_SIDE))))
    w = max(1, int(round(width * rng.uniform(*CROP_SIDE))))
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    shifted = boxes - np.asarray([left, top, left, top], np.float32)
    clipped = np.clip(shifted, 0, [w, h, w, h]).astype(np.float32)
    keep = np.all(clipped[:, 2:] - clipped[:, :2] >= MIN_CROPPED_SIDE, axis=1)
    crop = image[top : top + h, left : left + w]
    return crop, clipped[keep], labels[keep], difficult[keep]


def jitter_color(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure and saturation scaled by factors in [1/1.5, 1.5] (log-uniform), clipped to [0, 1]."""
    exposure, saturation = np.exp(rng.uniform(-1, 1, 2) * np.log(COLOR_JITTER))
    grey = image @ GREY_WEIGHTS
    out = grey[..., None] + (image - grey[..., None]) * saturation
    return np.clip(out * exposure, 0.0, 1.0).astype(np.float32)


class DetectionBatchMaker:
    """(step, example indices) -> one batch, per the module docstring."""

    def __init__(
        self,
        source,
        recipe: DetectorInput,
        max_boxes: int,
        augment: str = "none",
        seed: int = 0,
        shard: Shard = ONE_PROCESS,
    ):
        if augment not in AUGMENTATIONS:
            raise ValueError(f"data.augment={augment!r} for detection: one of {AUGMENTATIONS}")
        self.source, self.recipe, self.max_boxes = source, recipe, max_boxes
        self.augment, self.seed, self.shard = augment, seed, shard

    def example(self, index: int, rng: np.random.Generator | None) -> dict:
        example = self.source[int(index)]
        boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
        if len(boxes) > self.max_boxes:
            raise ValueError(
                f"example {index} of {self.source!r} has {len(boxes)} boxes, more than "
                f"data.max_boxes={self.max_boxes}; raise data.max_boxes to at least {len(boxes)} "
                "(or tile large images)."
            )
        labels = np.asarray(example["labels"]).reshape(-1)
        flags = np.broadcast_to(np.asarray(example.get("difficult", False), bool), labels.shape)
        image = np.asarray(example["image"])
        if rng is not None and self.augment == "flip_color_crop":
            image, boxes, labels, flags = random_crop(image, boxes, labels, flags, rng)
        image, transform = prepare_image(image, self.recipe)
        boxes = transform.to_input(boxes)
        if rng is not None and self.augment != "none":
            if rng.random() < 0.5:
                image, boxes = flip(image, boxes)
            if self.augment in ("flip_color", "flip_color_crop"):
                image = jitter_color(image, rng)
        count = len(boxes)
        padded = np.zeros((self.max_boxes, 4), np.float32)
        padded[:count] = boxes
        padded_labels = np.zeros(self.max_boxes, np.int32)
        padded_labels[:count] = labels
        difficult = np.zeros(self.max_boxes, bool)  # evaluation ignores these (VOC's rule)
        difficult[:count] = flags
        mask = np.arange(self.max_boxes) < count
        return {
            "image": image,
            "boxes": padded,
            "labels": padded_labels,
            "box_mask": mask,
            "box_difficult": difficult,
        }

    def __call__(self, step: int, indices: np.ndarray, train: bool = True) -> dict:
        rows = self.shard.rows(len(indices))
        first = rows.start
        examples = [
            self.example(
                index,
                np.random.default_rng((self.seed, step, first + position)) if train else None,
            )
            for position, index in enumerate(indices[rows])
        ]
        batch = {key: np.stack([e[key] for e in examples]) for key in examples[0]}
        batch["weight"] = np.ones(len(examples), np.float32)
        return batch


def make_detection_train_batches(
    source,
    recipe: DetectorInput,
    *,
    batch_size: int,
    seed: int,
    max_boxes: int,
    augment: str = "flip",
    shard: Shard = ONE_PROCESS,
) -> grain.MapDataset:
    """ds[step] -> step's training batch, for ever; deterministic in (seed, step)."""
    check_sizes(source, batch_size)
    maker = DetectionBatchMaker(source, recipe, max_boxes, augment, seed, shard)
    return train_index_batches(len(source), batch_size, seed).map_with_index(maker)


def make_detection_eval_batches(
    source, recipe: DetectorInput, *, batch_size: int, max_boxes: int, shard: Shard = ONE_PROCESS
) -> list[dict]:
    """Every example once, in order, no augmentation; the last batch padded with weight-0 rows."""
    check_sizes(source, batch_size)
    maker = DetectionBatchMaker(source, recipe, max_boxes, "none", 0, shard)
    batches = []
    for start in range(0, len(source), batch_size):
        indices = np.arange(start, min(start + batch_size, len(source)))
        real = len(indices)
        indices = np.concatenate([indices, np.full(batch_size - real, indices[0])])
        batch = maker(0, indices, train=False)
        batch["weight"] = (np.arange(batch_size) < real).astype(np.float32)[shard.rows(batch_size)]
        batches.append(batch)
    return batches
