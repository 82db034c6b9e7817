"""FashionDet scenes: deterministic, exact boxes, no overlaps, items from the split's own pool."""

import numpy as np
import pytest

from tlx.data.fashiondet import FashionDetSource, scene, split_items


@pytest.fixture(autouse=True)
def needs_fashion_mnist(fashion_mnist_files):
    """Every test here draws FashionDet scenes from Fashion-MNIST's items."""


def test_a_scene_is_a_pure_function_of_seed_split_and_index():
    a, b = scene("train", 7, seed=3), scene("train", 7, seed=3)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, scene("train", 8, seed=3).image)
    assert not np.array_equal(a.image, scene("train", 7, seed=4).image)
    assert not np.array_equal(a.image, scene("validation", 7, seed=3).image)


def test_boxes_are_tight_inside_the_image_and_never_overlap():
    for index in range(40):
        s = scene("train", index, size=128, max_objects=4)
        assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
        assert 1 <= len(s.boxes) <= 4 and len(s.labels) == len(s.boxes)
        assert np.all(s.boxes >= 0) and np.all(s.boxes <= 128)
        assert np.all(s.boxes[:, 2:] > s.boxes[:, :2])
        for i in range(len(s.boxes)):
            for j in range(i + 1, len(s.boxes)):
                a, b = s.boxes[i], s.boxes[j]
                assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
        assert set(s.labels.tolist()) <= set(range(10))


def test_each_box_is_exactly_where_its_item_was_pasted():
    # On a scene's pixels, the item raises brightness inside its box: every box's edge rows and
    # columns hold some of the item (tight), and the pixels just outside are background.
    s = scene("test", 5, seed=1, size=160)
    background = scene("test", 5, seed=1, size=160, max_objects=0).image.astype(int)
    changed = np.any(s.image.astype(int) != background, axis=-1)
    covered = np.zeros_like(changed)
    for x0, y0, x1, y1 in s.boxes.astype(int):
        covered[y0:y1, x0:x1] = True
        assert changed[y0, x0:x1].any() and changed[y1 - 1, x0:x1].any()
        assert changed[y0:y1, x0].any() and changed[y0:y1, x1 - 1].any()
    assert not (changed & ~covered).any()  # nothing pasted outside a box


def test_splits_draw_items_from_disjoint_pools():
    train, _ = split_items("train")
    validation, _ = split_items("validation")
    test, _ = split_items("test")
    assert (len(train), len(validation), len(test)) == (54_000, 6_000, 10_000)
    seen = {image.tobytes() for image in validation[:500]}
    assert not any(image.tobytes() in seen for image in train[:5000])


def test_source_is_random_access_with_a_length():
    source = FashionDetSource("validation", length=5, seed=2)
    assert len(source) == 5
    example = source[3]
    assert set(example) == {"image", "boxes", "labels"}
    np.testing.assert_array_equal(example["image"], scene("validation", 3, seed=2).image)
    with pytest.raises(IndexError):
        source[5]
