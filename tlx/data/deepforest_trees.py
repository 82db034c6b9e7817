"""`data.name="deepforest"`: tree crowns in aerial RGB images, split by site.

deepforest (`pip install --no-deps deepforest==2.1.0`, MIT) ships four annotated NEON images as
Pascal VOC XML: two crops from the YELL site (2299x2472, 574 trees; 1249x1035, 279 trees),
OSBS_029 (400x400, 61) and SOAP_061 (400x400, 37, marked Alive or Dead). Every box is one class,
"tree". Splits keep sites apart, so the test site is never seen in training:

- train and validation: the two YELL crops (one a burnt, open slope, the other dense conifers),
  each cut at 80% of its height: the top part gives the train tiles, the bottom part the
  validation tiles, so both kinds of forest are in both and no pixel is in both. Tiles are 400x400
  (stride 300: they overlap by 100 px, so a crown under 100 px lies whole in some tile);
- test: OSBS_029 and SOAP_061, whole (other sites, other forests).

A box cut by a tile's edge is kept, clipped; one less than half inside the tile is marked
difficult: training learns it as the clipped crown it shows, evaluation ignores it (VOC's rule).
Examples are in memory: ``{"image", "boxes", "labels", "difficult"}``.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from tlx.data.voc import read_voc

LABEL_NAMES = ("tree",)
TILE, STRIDE = 400, 300
MIN_VISIBLE = 0.5
YELL = ("2019_YELL_2_528000_4978000_image_crop2.xml", "2019_YELL_2_541000_4977000_image_crop.xml")
FILES = {"train": YELL, "validation": YELL, "test": ("OSBS_029.xml", "SOAP_061.xml")}
TRAIN_FRACTION = 0.8  # of each YELL crop's height, from the top; the rest is validation


def data_dir() -> Path:
    spec = importlib.util.find_spec("deepforest")
    if spec is None:
        raise FileNotFoundError(
            "data.name='deepforest' reads the images packaged with deepforest: "
            "pip install --no-deps deepforest==2.1.0"
        )
    return Path(spec.submodule_search_locations[0]) / "data"


def tile_starts(size: int, tile: int = TILE, stride: int = STRIDE) -> list[int]:
    """Tile origins along one side: every `stride`, the last one flush with the edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def tile(image: np.ndarray, boxes: np.ndarray, top: int, left: int, size: int = TILE) -> dict:
    """One tile of an image with its boxes, clipped; those less than half inside are difficult."""
    crop = image[top : top + size, left : left + size]
    h, w = crop.shape[:2]
    shifted = boxes - np.asarray([left, top, left, top], np.float32)
    clipped = np.clip(shifted, 0, [w, h, w, h])
    area = lambda b: np.prod(np.maximum(b[:, 2:] - b[:, :2], 0), axis=1)
    visible = area(clipped) / np.maximum(area(shifted), 1e-9)
    keep = visible > 0
    return {
        "image": crop,
        "boxes": clipped[keep].astype(np.float32),
        "labels": np.zeros(int(keep.sum()), np.int64),
        "difficult": visible[keep] < MIN_VISIBLE,
    }


@functools.cache
def examples(split: str) -> tuple[dict, ...]:
    """The split's examples (tiles for train and validation, whole images for test)."""
    if split not in FILES:
        raise ValueError(f"deepforest has splits {tuple(FILES)}, not {split!r}")
    folder = data_dir()
    out = []
    for name in FILES[split]:
        annotation = read_voc(folder / name)
        with Image.open(folder / annotation.filename) as image:
            pixels = np.asarray(image.convert("RGB"))
        if split == "test":
            out.append(tile(pixels, annotation.boxes, 0, 0, size=max(pixels.shape[:2])))
            continue
        # The part of the crop this split owns, its boxes clipped to it (and flagged if cut).
        cut = int(round(pixels.shape[0] * TRAIN_FRACTION))
        top = 0 if split == "train" else cut
        part = tile(pixels, annotation.boxes, top, 0, size=max(pixels.shape[:2]))
        part["image"] = part["image"][: cut if split == "train" else None]
        part = _restrict(part, part["image"].shape[0])
        for row in tile_starts(part["image"].shape[0]):
            for left in tile_starts(part["image"].shape[1]):
                piece = tile(part["image"], part["boxes"], row, left)
                inherited = _inherited_flags(part, piece, row, left)
                piece["difficult"] |= inherited
                out.append(piece)
    return tuple(out)


def _restrict(part: dict, height: int) -> dict:
    """A part's boxes clipped to its first `height` rows; those cut below half flagged."""
    boxes = part["boxes"]
    clipped = boxes.copy()
    clipped[:, 3] = np.minimum(clipped[:, 3], height)
    keep = clipped[:, 3] - clipped[:, 1] > 0
    visible = (clipped[:, 3] - clipped[:, 1]) / np.maximum(boxes[:, 3] - boxes[:, 1], 1e-9)
    return {
        "image": part["image"],
        "boxes": clipped[keep],
        "labels": part["labels"][keep],
        "difficult": part["difficult"][keep] | (visible[keep] < MIN_VISIBLE),
    }


def _inherited_flags(part: dict, piece: dict, top: int, left: int) -> np.ndarray:
    """A tile's boxes keep the difficult flag their box had in the part (cut by the split)."""
    if not len(piece["boxes"]):
        return np.zeros(0, bool)
    shifted = part["boxes"] - np.asarray([left, top, left, top], np.float32)
    size = piece["image"].shape[:2]
    clipped = np.clip(shifted, 0, [size[1], size[0], size[1], size[0]])
    area = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0), axis=1)
    return part["difficult"][area > 0]


class DeepforestSource:
    """Random access to a split's examples."""

    def __init__(self, split: str):
        self.split = split
        self.examples = examples(split)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]

    def __repr__(self) -> str:
        return f"deepforest {self.split} ({len(self)} images)"
