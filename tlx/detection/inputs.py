"""Images into a detector and boxes back out: plain resize or letterbox, with the box transform.

Resizing is tlx.data.resize.resize_bilinear, OpenCV's cv2.resize(INTER_LINEAR) on uint8 images, so
`prepare_image` gives the same input as
cv2.dnn.blobFromImage(image, 1/255, size, swapRB=...) within one grey level (OpenCV's fixed-point
weights), and predictions agree with OpenCV's darknet pipeline. Host-side numpy: it runs in the
input pipeline, before the device.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tlx.data.preprocess import DetectorInput
from tlx.data.resize import resize_bilinear

LETTERBOX_FILL = 0.5  # darknet's letterbox_image fills the border with mid grey


@dataclasses.dataclass(frozen=True)
class BoxTransform:
    """Image pixels -> model-input pixels: x * scale_x + offset_x (and y alike); `to_image` undoes
    it. For a plain resize the offsets are 0 and the scales differ; a letterbox has one scale."""

    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """[..., 4] xyxy boxes in image pixels -> model-input pixels."""
        scale = np.asarray([self.scale_x, self.scale_y] * 2, np.float32)
        offset = np.asarray([self.offset_x, self.offset_y] * 2, np.float32)
        return np.asarray(boxes, np.float32) * scale + offset

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """[..., 4] xyxy boxes in model-input pixels -> image pixels."""
        scale = np.asarray([self.scale_x, self.scale_y] * 2, np.float32)
        offset = np.asarray([self.offset_x, self.offset_y] * 2, np.float32)
        return (np.asarray(boxes, np.float32) - offset) / scale


def as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 grayscale [H, W] or [H, W, 1], RGB, or RGBA -> uint8 [H, W, 3]."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an [H, W] or [H, W, 1|3|4] image, got shape {image.shape}")
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[..., :3]


def prepare_image(image: np.ndarray, recipe: DetectorInput) -> tuple[np.ndarray, BoxTransform]:
    """uint8 image -> (float32 [S, S, 3] in [0, 1], the transform of its boxes), S = image_size."""
    image = as_rgb(image)
    height, width = image.shape[:2]
    size = recipe.image_size
    if not recipe.letterbox:
        resized = resize_bilinear(image, size, size).astype(np.float32) / 255
        return resized, BoxTransform(size / width, size / height)
    # darknet's letterbox_image: the longer side fits, integer sizes, centred.
    if size / width < size / height:
        new_w, new_h = size, (height * size) // width
    else:
        new_w, new_h = (width * size) // height, size
    canvas = np.full((size, size, 3), LETTERBOX_FILL, np.float32)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    resized = resize_bilinear(image, new_h, new_w).astype(np.float32) / 255
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, BoxTransform(new_w / width, new_h / height, left, top)


def prepare_batch(images, recipe: DetectorInput) -> tuple[np.ndarray, list[BoxTransform]]:
    """uint8 images of any sizes -> (float32 [N, S, S, 3], one BoxTransform per image)."""
    prepared = [prepare_image(image, recipe) for image in images]
    return np.stack([p[0] for p in prepared]), [p[1] for p in prepared]
