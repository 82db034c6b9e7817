"""Detector inputs: OpenCV's resize reproduced, letterbox geometry, boxes mapped back exactly."""

import numpy as np
import pytest

from tlx.data.preprocess import DetectorInput
from tlx.data.resize import resize_bilinear
from tlx.detection.inputs import as_rgb, prepare_batch, prepare_image


@pytest.mark.parametrize("shape", [(600, 512, 3), (37, 91, 3), (416, 416, 3), (20, 30, 1)])
@pytest.mark.parametrize("size", [(416, 416), (64, 100)])
def test_resize_matches_opencv_within_one_grey_level(shape, size):
    cv2 = pytest.importorskip("cv2")
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    theirs = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR).reshape(*size, -1)
    ours = resize_bilinear(image, *size)
    # OpenCV interpolates uint8 with 11-bit fixed-point weights, so a value near x.5 can round
    # the other way: at most 1 level apart, on 13% of the pixels of random noise (measured).
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert np.mean(ours != theirs) < 0.25


def test_plain_resize_boxes_round_trip_and_scale_per_axis():
    image = np.zeros((300, 600, 3), np.uint8)
    x, transform = prepare_image(image, DetectorInput(image_size=416))
    assert x.shape == (416, 416, 3) and x.dtype == np.float32
    box = np.asarray([[60.0, 30.0, 300.0, 150.0]])
    np.testing.assert_allclose(transform.to_input(box), [[41.6, 41.6, 208.0, 208.0]], rtol=1e-6)
    np.testing.assert_allclose(transform.to_image(transform.to_input(box)), box, rtol=1e-6)


def test_letterbox_keeps_the_aspect_and_centres_the_image():
    image = np.full((300, 600, 3), 255, np.uint8)  # white, twice as wide as high
    x, transform = prepare_image(image, DetectorInput(image_size=416, letterbox=True))
    assert transform.scale_x == transform.scale_y == pytest.approx(416 / 600)
    assert (transform.offset_x, transform.offset_y) == (0, (416 - 208) // 2)
    assert np.all(x[:104] == 0.5) and np.all(x[104 + 208 :] == 0.5)  # grey bands
    assert np.all(x[104 : 104 + 208] == 1.0)
    corners = np.asarray([[0.0, 0.0, 600.0, 300.0]])
    np.testing.assert_allclose(transform.to_input(corners), [[0, 104, 416, 312]], atol=1e-4)
    np.testing.assert_allclose(transform.to_image(transform.to_input(corners)), corners, atol=1e-4)


def test_grayscale_and_rgba_become_rgb_and_batches_mix_sizes():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_rgb(gray).shape == (3, 4, 3)
    assert as_rgb(np.zeros((3, 4, 4), np.uint8)).shape == (3, 4, 3)
    with pytest.raises(ValueError, match="expected an"):
        as_rgb(np.zeros((3, 4, 2), np.uint8))
    batch, transforms = prepare_batch([gray, np.zeros((50, 20, 3), np.uint8)], DetectorInput(32))
    assert batch.shape == (2, 32, 32, 3) and len(transforms) == 2
