"""The fashion_mnist_local builder on Debian's real files: counts, splits, pixels, errors."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tlx.data import fashion_mnist, hash_split, image_sources

SPLIT_SIZES = {"train": 54_000, "validation": 6_000, "test": 10_000}


def debian_files_or_skip():
    try:
        return fashion_mnist.find_dir()
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST files absent (apt-get install dataset-fashion-mnist): {e}")


@pytest.fixture(scope="session")
def data_dir(image_data_dir):
    return image_data_dir


@pytest.fixture(scope="session")
def splits(data_dir):
    debian_files_or_skip()
    return {
        name: image_sources.load_image_source("fashion_mnist", name, data_dir)
        for name in SPLIT_SIZES
    }


@pytest.fixture(scope="session")
def original_train():
    return fashion_mnist.read_split(debian_files_or_skip(), "train")


def test_split_sizes_and_records(splits):
    assert {name: len(source) for name, source in splits.items()} == SPLIT_SIZES
    record = splits["test"][0]
    assert set(record) == {"image", "label"}
    assert record["image"].dtype == np.uint8 and record["image"].shape == (28, 28, 1)
    assert isinstance(record["label"], int)


def test_label_names(data_dir, splits):
    names = image_sources.image_label_names("fashion_mnist", data_dir)
    assert names == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"] + [
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]  # fmt: skip
    assert image_sources.image_num_classes("fashion_mnist", data_dir) == 10


def test_class_counts(splits):
    # Both original splits are balanced: 6,000 and 1,000 images per class.
    np.testing.assert_array_equal(np.bincount(splits["test"].labels), [1000] * 10)
    train_and_validation = np.concatenate([splits["train"].labels, splits["validation"].labels])
    np.testing.assert_array_equal(np.bincount(train_and_validation), [6000] * 10)
    assert np.bincount(splits["validation"].labels).min() > 550  # a random 10% of each class


def test_known_pixel_statistics(splits):
    # Published: mean 0.2860 (train) / 0.2868 (test) of 255, i.e. 72.94 / 73.15.
    train_and_validation = np.concatenate([splits["train"].images, splits["validation"].images])
    assert train_and_validation.mean() == pytest.approx(72.94035, abs=1e-4)
    assert splits["test"].images.mean() == pytest.approx(73.14657, abs=1e-4)
    assert splits["train"].images.mean() == pytest.approx(72.91441, abs=1e-4)  # this split rule
    assert splits["validation"].images.mean() == pytest.approx(73.17384, abs=1e-4)


def digests(images):
    return [hashlib.sha1(image.tobytes()).digest() for image in images]


def test_splits_are_disjoint_and_cover_the_training_file(splits, original_train):
    train, validation = set(digests(splits["train"].images)), digests(splits["validation"].images)
    assert len(train) == 54_000 and len(set(validation)) == 6_000  # no duplicate images
    assert not train & set(validation)
    assert train | set(validation) == set(digests(original_train[0]))
    assert not set(digests(splits["test"].images)) & (train | set(validation))


def test_validation_is_the_documented_hash_rule(splits, original_train):
    images, labels = original_train
    smallest = sorted(range(60_000), key=lambda i: hashlib.sha1(images[i].tobytes()).digest())
    chosen = np.sort(smallest[:6000])
    np.testing.assert_array_equal(fashion_mnist.validation_indices(images), chosen)
    # The validation split holds exactly these images with their labels (in tfds's order).
    expected = {(images[i].tobytes(), int(labels[i])) for i in chosen}
    source = splits["validation"]
    assert {(source.images[i, :, :, 0].tobytes(), int(source.labels[i])) for i in range(6000)} == (
        expected
    )


def test_the_rule_ignores_record_order(original_train):
    # Another copy in another record order (as tfds's fashion_mnist): the same images are chosen.
    images = original_train[0][:3000]
    order = np.random.default_rng(0).permutation(3000)
    plain = hash_split.rank_split((im.tobytes() for im in images), [("v", 300)], "t")["v"]
    shuffled = hash_split.rank_split((im.tobytes() for im in images[order]), [("v", 300)], "t")
    assert set(digests(images[plain])) == set(digests(images[order][shuffled["v"]]))


def write_idx(path, magic, array):
    header = np.array([magic, *array.shape], ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_checks(tmp_path):
    good = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    write_idx(tmp_path / "ok.gz", 2051, good)
    np.testing.assert_array_equal(
        fashion_mnist.read_idx(tmp_path / "ok.gz", 2051, (2, 28, 28)), good
    )
    with pytest.raises(ValueError, match="magic number 0x803, found 0x801"):
        write_idx(tmp_path / "labels.gz", 2049, np.zeros(2))
        fashion_mnist.read_idx(tmp_path / "labels.gz", 2051, (2, 28, 28))
    with pytest.raises(ValueError, match=r"expected shape \(3, 28, 28\)"):
        fashion_mnist.read_idx(tmp_path / "ok.gz", 2051, (3, 28, 28))
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(np.array([2051, 2, 28, 28], ">u4").tobytes() + b"\0" * 100)
    with pytest.raises(ValueError, match="100 bytes"):
        fashion_mnist.read_idx(tmp_path / "short.gz", 2051, (2, 28, 28))


def test_missing_files_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(fashion_mnist.ENV_DIR, str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        image_sources.load_image_source("fashion_mnist", "train", str(tmp_path / "data"))
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message and str(tmp_path) in message
    assert "TLX_FASHION_MNIST_DIR" in message and "train-images-idx3-ubyte.gz" in message


def test_env_dir_is_used(monkeypatch, tmp_path):
    folder = debian_files_or_skip()
    for images_file, labels_file in fashion_mnist.FILES.values():
        for name in (images_file, labels_file):
            (tmp_path / name).symlink_to(folder / name)
    monkeypatch.setenv(fashion_mnist.ENV_DIR, str(tmp_path))
    assert fashion_mnist.find_dir() == tmp_path


def test_read_without_tensorflow(data_dir, splits):
    # A fresh interpreter reading the prepared copy: TensorFlow must stay unimported.
    script = textwrap.dedent(
        f"""
        import sys
        from tlx.data import image_sources
        source = image_sources.load_image_source("fashion_mnist", "validation", {data_dir!r})
        assert len(source) == 6000, len(source)
        assert "tensorflow" not in sys.modules
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
