"""OpenCV's bilinear resize of uint8 images, in numpy (no OpenCV needed at run time).

cv2.resize(..., INTER_LINEAR): pixel centres aligned (a source coordinate is (x + 0.5) * scale -
0.5, clamped to the image), no antialiasing when shrinking, the result rounded back to uint8. OpenCV
interpolates uint8 with 11-bit fixed-point weights, so the two differ by at most one grey level
(tests/detection/test_inputs.py). Used by detector inputs and by FashionDet's scenes.
"""

from __future__ import annotations

import numpy as np


def _axis_weights(size_in: int, size_out: int):
    """Source indices and weights of a linear resize along one axis, pixel centres aligned."""
    centres = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    centres = np.clip(centres, 0, size_in - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (centres - low).astype(np.float32)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [height, width, C], as cv2.resize(..., INTER_LINEAR)."""
    y0, y1, wy = _axis_weights(image.shape[0], height)
    x0, x1, wx = _axis_weights(image.shape[1], width)
    img = image.astype(np.float32)
    rows = img[y0] * (1 - wy)[:, None, None] + img[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
