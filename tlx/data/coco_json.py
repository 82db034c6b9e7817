"""COCO-style JSON annotations (what labelling tools export): read one file, every image checked.

A file holds "images" ({"id", "file_name", "width", "height"}), "annotations" ({"image_id",
"bbox": [x, y, width, height] in pixels, "category_id", optional "iscrowd"}) and "categories"
({"id", "name"}). Each image becomes a tlx.data.voc.VocAnnotation (boxes as xyxy, crowd regions
as difficult: evaluation ignores them, as COCO's does), so VOC and COCO folders share one
builder (tlx.data.detection_folder). Every problem names the file, the image and the annotation.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from tlx.data.voc import AnnotationError, VocAnnotation


def is_coco_json(path: str | os.PathLike) -> bool:
    """Whether a .json file is a COCO annotation file (its top level has images and
    annotations)."""
    try:
        with open(path) as f:
            head = f.read(4096)
    except OSError:
        return False
    return '"images"' in head or '"annotations"' in head


@functools.lru_cache(maxsize=8)
def read_coco(path: str) -> tuple[tuple[str, ...], dict[str, VocAnnotation]]:
    """(category names by class index, {file_name: annotation}) of one COCO JSON file, checked.

    Class indices follow the categories sorted by id (COCO's ids need not be contiguous)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        message = f"{path}: not readable JSON ({e}); expected COCO annotations."
        raise AnnotationError(message) from None
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise AnnotationError(f"{path}: no {', '.join(missing)}; a COCO file has all three.")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(categories)}
    images = {}
    for image in data["images"]:
        if image["id"] in images:
            raise AnnotationError(f"{path}: image id {image['id']} appears twice.")
        images[image["id"]] = image
    boxes = {i: [] for i in images}
    for number, ann in enumerate(data["annotations"], start=1):
        where = f"{path}, annotation {number} (id {ann.get('id', '?')})"
        image = images.get(ann.get("image_id"))
        if image is None:
            raise AnnotationError(f"{where}: image_id {ann.get('image_id')} is not in images.")
        if ann.get("category_id") not in index:
            raise AnnotationError(
                f"{where}: category_id {ann.get('category_id')} is not in categories "
                f"({sorted(index)}). Add the category or fix the id."
            )
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w <= 0 or h <= 0:
            raise AnnotationError(f"{where}: bbox {ann['bbox']} has no area; width and height > 0.")
        if x < 0 or y < 0 or x + w > image["width"] or y + h > image["height"]:
            raise AnnotationError(
                f"{where}: bbox {ann['bbox']} (x, y, width, height) is outside image "
                f"{image['file_name']} ({image['width']}x{image['height']}); clip it to the image."
            )
        boxes[image["id"]].append(
            (
                (x, y, x + w, y + h),
                categories[index[ann["category_id"]]]["name"],
                ann.get("iscrowd", 0),
            )
        )
    annotations = {}
    for image_id, image in images.items():
        found = boxes[image_id]
        annotations[image["file_name"]] = VocAnnotation(
            path=f"{path}#{image['file_name']}",
            filename=image["file_name"],
            width=int(image["width"]),
            height=int(image["height"]),
            boxes=np.asarray([b for b, _, _ in found], np.float32).reshape(-1, 4),
            names=tuple(n for _, n, _ in found),
            difficult=np.asarray([bool(c) for _, _, c in found], bool),
        )
    return tuple(c["name"] for c in categories), annotations
