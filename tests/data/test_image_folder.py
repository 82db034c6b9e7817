"""The local_image_folder builder on generated PNG/JPEG folders: classes, splits, caching, errors."""

from __future__ import annotations

import io
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from tlx.data import hash_split, image_folder, image_sources

CLASSES = ("cat", "dog", "emu")


def make_image(rng, mode="RGB"):
    height, width = rng.integers(12, 40, size=2)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def make_folder(root: pathlib.Path, per_class=14, seed=0, prefix="") -> dict[str, np.ndarray]:
    """root/<prefix>/<class>/<images>: PNG and JPEG, RGB and other modes, one nested folder.

    Returns the pixels PIL reads from each file (converted to RGB), by path relative to root.
    """
    rng = np.random.default_rng(seed)
    pixels = {}
    for c in CLASSES:
        for i in range(per_class):
            mode = ("RGB", "RGB", "L", "RGBA", "P")[i % 5]
            ext = ".jpg" if i % 3 == 0 and mode in ("RGB", "L") else ".png"
            relative = f"{prefix}{c}/{'sub/' if i == 4 else ''}{c}_{i}{ext}"
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            make_image(rng, mode).save(path)
            with Image.open(path) as image:
                pixels[relative] = np.asarray(image.convert("RGB"))
    (root / prefix / "README.txt").write_text("not an image")
    (root / prefix / CLASSES[0] / ".DS_Store").write_bytes(b"\0\1")
    return pixels


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pets")
    return root, make_folder(root)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("folder_data"))


@pytest.fixture(scope="module")
def prepared(folder, data_dir):
    return image_folder.builder(folder[0], data_dir)


def read_split(builder, split):
    """{relative path: (decoded RGB pixels, label)} of a prepared split, via tfds's own decoder."""
    return {
        r["path"].decode(): (r["image"], int(r["label"]))
        for r in builder.as_data_source(split=split)
    }


def test_classes_sorted_and_images_found(prepared, folder):
    assert prepared.info.features["label"].names == list(CLASSES)
    total = sum(prepared.info.splits[s].num_examples for s in prepared.info.splits)
    assert total == len(folder[1]) == 42  # README.txt and .DS_Store ignored


def test_splits_follow_the_path_hash(prepared, folder):
    fractions = dict(image_folder.DEFAULT_FRACTIONS)
    seen = {}
    for split in prepared.info.splits:
        records = read_split(prepared, split)
        for relative, (_, label) in records.items():
            assert hash_split.fraction_split(relative, fractions) == split, relative
            assert CLASSES[label] == relative.split("/")[0]
        seen.update(records)
    assert set(seen) == set(folder[1])  # every image once, no image in two splits


def test_stored_images_decode_to_the_files_pixels(prepared, folder):
    for split in prepared.info.splits:
        for relative, (image, _) in read_split(prepared, split).items():
            assert image.dtype == np.uint8 and image.shape[2] == 3
            np.testing.assert_array_equal(image, folder[1][relative], err_msg=relative)


def test_sources_and_label_names(prepared, folder, data_dir):
    name = f"image_folder:{folder[0]}"
    assert image_sources.image_label_names(name, data_dir) == list(CLASSES)
    sizes = {}
    for split in prepared.info.splits:
        source = image_sources.load_image_source(name, split, data_dir)
        sizes[split] = len(source)
        labels = [source[i]["label"] for i in range(len(source))]
        assert labels == source.labels.tolist()
        expected = {(v[0].tobytes(), v[1]) for v in read_split(prepared, split).values()}
        got = {(source[i]["image"].tobytes(), source[i]["label"]) for i in range(len(source))}
        assert got == expected
    assert sizes == {s: prepared.info.splits[s].num_examples for s in prepared.info.splits}
    assert sum(sizes.values()) == 42 and sizes["train"] > 42 / 2


def test_config_is_deterministic_and_tracks_the_content(folder, tmp_path):
    root = folder[0]
    first = image_folder.folder_config(root)
    assert image_folder.folder_config(root) == first
    assert image_folder.folder_config(str(root) + "/").name == first.name
    other = image_folder.folder_config(root, {"train": 0.5, "validation": 0.25, "test": 0.25})
    assert other.name != first.name
    copy = tmp_path / "copy"
    make_folder(copy)
    assert image_folder.folder_config(copy).name == first.name  # same content, same cache
    make_image(np.random.default_rng(9)).save(copy / "dog" / "extra.png")
    changed = image_folder.folder_config(copy)
    assert changed.name != first.name
    assert set(first.files) <= set(changed.files)  # adding an image moves no other image


def test_prepared_once(folder, data_dir, prepared, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(image_folder.LocalImageFolder, "download_and_prepare", fail)
    again = image_folder.builder(folder[0], data_dir)
    assert again.data_dir == prepared.data_dir


def test_presplit_folder(tmp_path):
    root = tmp_path / "presplit"
    pixels = {}
    for split, n in (("train", 5), ("validation", 2), ("test", 3)):
        pixels.update(make_folder(root, per_class=n, seed=n, prefix=f"{split}/"))
    config = image_folder.folder_config(root)
    assert config.presplit and config.classes == CLASSES
    builder = image_folder.builder(root, str(tmp_path / "data"))
    assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {
        "train": 15,
        "validation": 6,
        "test": 9,
    }
    for split in ("train", "validation", "test"):
        assert all(p.startswith(split + "/") for p in read_split(builder, split))


def test_presplit_folder_without_validation(tmp_path):
    root = tmp_path / "two"
    make_folder(root / "train", per_class=2)
    make_folder(root / "test", per_class=1, seed=1)
    data_dir = str(tmp_path / "data")
    name = f"image_folder:{root}"
    assert len(image_sources.load_image_source(name, "test", data_dir)) == 3
    with pytest.raises(KeyError, match=r"no split 'validation'; available: \['test', 'train'\]"):
        image_sources.load_image_source(name, "validation", data_dir)


def test_corrupt_image_names_the_file(tmp_path):
    root = tmp_path / "broken"
    make_folder(root, per_class=2)
    good = io.BytesIO()
    make_image(np.random.default_rng(1)).save(good, format="JPEG")
    bad = root / "dog" / "truncated.jpg"
    bad.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    with pytest.raises(ValueError, match=r"Cannot read image .*dog/truncated\.jpg"):
        image_folder.builder(root, str(tmp_path / "data"))
    bad.write_bytes(b"this is not a png")
    bad.rename(root / "dog" / "text.png")
    with pytest.raises(ValueError, match=r"Cannot read image .*dog/text\.png"):
        image_folder.builder(root, str(tmp_path / "data"))


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder.folder_config(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match="no class subfolders"):
        image_folder.folder_config(tmp_path / "flat")
    (tmp_path / "flat" / "empty").mkdir()
    (tmp_path / "flat" / "full").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "full" / "a.png")
    with pytest.raises(ValueError, match=r"\['empty'\] .* hold no images"):
        image_folder.folder_config(tmp_path / "flat")
    os.rmdir(tmp_path / "flat" / "empty")
    with pytest.raises(ValueError, match="sum to 1"):
        image_folder.folder_config(
            tmp_path / "flat", {"train": 0.8, "validation": 0.1, "test": 0.2}
        )
    with pytest.raises(ValueError, match="fractions must give"):
        image_folder.folder_config(tmp_path / "flat", {"train": 1.0})
