"""Detection batches: boxes follow the pixels through resize, letterbox and flips; static shapes;
deterministic in (seed, step); too many boxes is an error naming the example."""

import numpy as np
import pytest

from tlx.data.preprocess import DetectorInput
from tlx.data.sampling import Shard
from tlx.detection.batches import (
    TfdsDetectionSource,
    flip,
    jitter_color,
    make_detection_eval_batches,
    make_detection_train_batches,
)


class Squares:
    """Examples with one bright square each, at a known place, on images of varied sizes."""

    def __init__(self, n=10):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        height, width = 60 + 10 * i, 100 - 5 * i
        image = np.zeros((height, width, 3), np.uint8)
        x0, y0 = 2 + i, 10 + i  # the square's centre is left of the middle: a flip moves it right
        image[y0 : y0 + 20, x0 : x0 + 30] = 255
        return {
            "image": image,
            "boxes": np.asarray([[x0, y0, x0 + 30, y0 + 20]], np.float32),
            "labels": np.asarray([i % 3]),
        }


def bright_box(image):
    """xyxy of the pixels above mid grey (the square), in the batch image's pixels."""
    ys, xs = np.nonzero(image.mean(-1) > 0.5)
    return np.asarray([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("letterbox", [False, True])
def test_boxes_follow_the_pixels_through_resize_and_flip(letterbox):
    recipe = DetectorInput(image_size=64, letterbox=letterbox)
    batches = make_detection_train_batches(
        Squares(), recipe, batch_size=4, seed=0, max_boxes=3, augment="flip"
    )
    flipped = 0
    for step in range(5):
        batch = batches[step]
        assert batch["image"].shape == (4, 64, 64, 3) and batch["boxes"].shape == (4, 3, 4)
        assert batch["box_mask"].sum(1).tolist() == [1, 1, 1, 1]
        for image, boxes in zip(batch["image"], batch["boxes"]):
            # Within 1.5 px: resizing blurs the square's edges by up to a pixel.
            np.testing.assert_allclose(bright_box(image), boxes[0], atol=1.5)
            flipped += (bright_box(image)[0] + bright_box(image)[2]) / 2 > 32
    assert 0 < flipped < 20  # about half the examples were mirrored


def test_training_batches_are_a_pure_function_of_seed_and_step():
    recipe = DetectorInput(image_size=32)
    make = lambda seed: make_detection_train_batches(
        Squares(), recipe, batch_size=4, seed=seed, max_boxes=2, augment="flip_color"
    )
    a, b = make(1), make(1)
    for key in ("image", "boxes", "labels", "box_mask"):
        np.testing.assert_array_equal(a[3][key], b[3][key])
    assert not np.array_equal(a[3]["image"], make(2)[3]["image"])


def test_eval_batches_cover_every_example_once_and_pad_with_weight_zero():
    batches = make_detection_eval_batches(Squares(10), DetectorInput(32), batch_size=4, max_boxes=2)
    assert [b["weight"].tolist() for b in batches][-1] == [1, 1, 0, 0]
    assert sum(b["weight"].sum() for b in batches) == 10
    labels = np.concatenate([b["labels"][:, 0][b["weight"] > 0] for b in batches])
    assert labels.tolist() == [i % 3 for i in range(10)]
    # Two processes: each builds its own rows, the weights of the padding included.
    halves = [
        make_detection_eval_batches(
            Squares(10), DetectorInput(32), batch_size=4, max_boxes=2, shard=Shard(k, 2)
        )
        for k in range(2)
    ]
    assert halves[1][-1]["weight"].tolist() == [0, 0]


def test_too_many_boxes_is_an_error_naming_the_example():
    batches = make_detection_train_batches(
        Squares(), DetectorInput(32), batch_size=2, seed=0, max_boxes=0
    )
    with pytest.raises(ValueError, match=r"example \d+ .* 1 boxes, more than data.max_boxes=0"):
        batches[0]


def test_flip_and_color_jitter():
    image = np.random.default_rng(0).uniform(0, 1, (8, 10, 3)).astype(np.float32)
    mirrored, boxes = flip(image, np.asarray([[1.0, 2.0, 4.0, 6.0]]))
    np.testing.assert_array_equal(mirrored[:, 0], image[:, -1])
    np.testing.assert_array_equal(boxes, [[6.0, 2.0, 9.0, 6.0]])
    jittered = jitter_color(image, np.random.default_rng(1))
    assert jittered.shape == image.shape and jittered.min() >= 0 and jittered.max() <= 1
    assert not np.allclose(jittered, image)


def test_tfds_records_become_pixel_boxes():
    record = {
        "image": np.zeros((50, 100, 3), np.uint8),
        "objects": {"bbox": np.asarray([[0.1, 0.2, 0.5, 0.6]]), "label": np.asarray([2])},
    }
    (example,) = [TfdsDetectionSource([record])[0]]
    np.testing.assert_allclose(example["boxes"], [[20, 5, 60, 25]])
    assert example["labels"].tolist() == [2]


def test_tfds_voc_records_keep_their_difficult_flags():
    record = {
        "image": np.zeros((10, 10, 3), np.uint8),
        "objects": {
            "bbox": np.asarray([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]),
            "label": np.asarray([1, 2]),
            "is_difficult": np.asarray([False, True]),  # tfds's voc names it so
        },
    }
    assert TfdsDetectionSource([record])[0]["difficult"].tolist() == [False, True]


def test_voc_not_prepared_names_the_command(tmp_path):
    from tlx.data.sources import DatasetNotPreparedError
    from tlx.detection.sources import detection_label_names

    with pytest.raises(DatasetNotPreparedError, match=r"tfds build voc/2007 .*array_record"):
        detection_label_names("voc/2007", str(tmp_path))


def test_random_crops_keep_boxes_on_their_pixels():
    batches = make_detection_train_batches(
        Squares(), DetectorInput(64), batch_size=4, seed=3, max_boxes=2, augment="flip_color_crop"
    )
    seen_cut = 0
    for step in range(6):
        batch = batches[step]
        for image, boxes, mask in zip(batch["image"], batch["boxes"], batch["box_mask"]):
            grey = image.mean(-1)
            if not mask[0]:  # the window missed the square (or cut it to a sliver)
                assert (grey > 0.3).sum() < 20
                seen_cut += 1
                continue
            bright = grey > grey.max() / 2  # the square, whatever the exposure jitter did
            ys, xs = np.nonzero(bright)
            found = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            np.testing.assert_allclose(found, boxes[0], atol=2.0)  # resizing blurs the edges
    assert seen_cut < 12  # most windows keep the square
