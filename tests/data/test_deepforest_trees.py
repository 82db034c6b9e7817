"""deepforest's tree crowns: tiles cover every tree whole somewhere, boxes clipped and flagged,
sites kept apart between splits."""

import importlib.util

import numpy as np
import pytest

from tlx.data.deepforest_trees import FILES, STRIDE, TILE, DeepforestSource, tile, tile_starts

needs_deepforest = pytest.mark.skipif(
    importlib.util.find_spec("deepforest") is None,
    reason="deepforest is not installed (pip install --no-deps deepforest==2.1.0)",
)


def test_tile_starts_cover_the_side_with_the_last_tile_flush():
    assert tile_starts(400) == [0] and tile_starts(300) == [0]
    starts = tile_starts(1035)
    assert starts[0] == 0 and starts[-1] == 1035 - TILE
    assert all(b - a <= STRIDE for a, b in zip(starts, starts[1:]))


def test_a_tile_clips_boxes_and_flags_those_mostly_outside():
    image = np.zeros((800, 800, 3), np.uint8)
    boxes = np.asarray(
        [[10, 10, 50, 50], [380, 10, 420, 50], [395, 100, 435, 140], [500, 500, 540, 540]],
        np.float32,
    )
    t = tile(image, boxes, top=0, left=0)
    assert t["image"].shape == (400, 400, 3)
    np.testing.assert_array_equal(
        t["boxes"], [[10, 10, 50, 50], [380, 10, 400, 50], [395, 100, 400, 140]]
    )
    # Inside: whole, half (not difficult), an eighth (difficult); the fourth is in another tile.
    assert t["difficult"].tolist() == [False, False, True]
    assert t["labels"].tolist() == [0, 0, 0]


@needs_deepforest
def test_splits_keep_sites_apart_and_keep_every_tree():
    assert all("YELL" in f for f in FILES["train"] + FILES["validation"])
    assert not any("YELL" in f for f in FILES["test"])
    test = DeepforestSource("test")
    assert sorted(len(e["boxes"]) for e in test) == [37, 61]  # SOAP_061, OSBS_029 whole
    train, validation = DeepforestSource("train"), DeepforestSource("validation")
    for source in (train, validation):
        assert all(e["image"].shape[0] <= TILE and e["image"].shape[1] == TILE for e in source)
        assert all(len(e["boxes"]) == len(e["labels"]) == len(e["difficult"]) for e in source)
    # Overlapping tiles show each crown at least half-visible at least once, on the whole: as
    # many such boxes in train and validation as the two YELL crops' 853 trees, or more.
    whole = sum(int((~e["difficult"]).sum()) for source in (train, validation) for e in source)
    assert whole >= 574 + 279
    # Validation is the bottom fifth of each crop: a fifth of the tiles' area, roughly.
    area = lambda source: sum(e["image"].shape[0] * e["image"].shape[1] for e in source)
    assert 0.1 < area(validation) / (area(train) + area(validation)) < 0.35
