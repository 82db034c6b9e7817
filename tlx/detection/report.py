"""Detections as people read them: one line per image, JSON rows, and annotated images.

A row is ``{"input": path, "detections": [{"label", "class_id", "score", "box"}, ...]}`` with boxes
(x0, y0, x1, y1) in the input image's pixels, best first (what tlx.predict prints with --json).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

# Distinct, readable box colours, cycled by class id.
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
)


def image_detections(found: Mapping, i: int, transform, image_shape, labels) -> list[dict]:
    """Image `i`'s detections (numpy "boxes", "scores", "classes", "valid" of a batch, boxes in
    the model input's pixels) as rows in the image's own pixels, clipped to it, best first."""
    n = int(np.sum(found["valid"][i]))
    height, width = image_shape[:2]
    boxes = np.clip(transform.to_image(found["boxes"][i, :n]), 0, [width, height, width, height])
    return [
        {
            "label": labels[int(c)],
            "class_id": int(c),
            "score": float(s),
            "box": [round(float(v), 2) for v in box],
        }
        for c, s, box in zip(found["classes"][i, :n], found["scores"][i, :n], boxes)
    ]


def format_detections(row: Mapping) -> str:
    """``tie 0.87 [214, 416, 291, 539]; person 0.26 [...]`` (boxes rounded to pixels), or
    ``(nothing detected)``."""
    found = row["detections"]
    if not found:
        return "(nothing detected)"
    return "; ".join(
        f"{d['label']} {d['score']:.2f} [{', '.join(str(round(v)) for v in d['box'])}]"
        for d in found
    )


def annotated_path(folder: pathlib.Path, source: str, taken: set[str]) -> pathlib.Path:
    """<folder>/<input's stem>.png, numbered when two inputs share a stem."""
    stem = pathlib.Path(source).stem or "image"
    name, number = f"{stem}.png", 1
    while name in taken:
        number += 1
        name = f"{stem}-{number}.png"
    taken.add(name)
    return folder / name


def draw_detections(image: np.ndarray, detections: Sequence[Mapping]):
    """A PIL image of `image` (uint8) with each detection's box and "label score" drawn."""
    from PIL import Image, ImageDraw

    from tlx.detection.inputs import as_rgb

    canvas = Image.fromarray(as_rgb(image))
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 300))
    for d in detections:
        colour = PALETTE[d["class_id"] % len(PALETTE)]
        x0, y0, x1, y1 = d["box"]
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        caption = f"{d['label']} {d['score']:.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), caption)
        lift = bottom - top + 2 * width
        y = y0 - lift if y0 - lift >= 0 else y0  # above the box, or inside it at the top edge
        draw.rectangle([x0, y, x0 + right - left + 2 * width, y + lift], fill=colour)
        draw.text((x0 + width, y + width - (top - y0)), caption, fill=(255, 255, 255))
    return canvas


def save_annotated(images, rows: Sequence[Mapping], folder) -> list[pathlib.Path]:
    """Each image with its row's detections drawn, as PNGs in `folder` (created); their paths."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    paths = []
    for image, row in zip(images, rows):
        path = annotated_path(folder, row["input"], taken)
        draw_detections(image, row["detections"]).save(path)
        paths.append(path)
    return paths
