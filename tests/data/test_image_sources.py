"""load_image_source for tfds's own image datasets, with tfds mock data: splits, records, errors.

tf_flowers, cifar10 and fashion_mnist cannot be downloaded here. `tfds.testing.mock_data`'s
default records are random numpy images serialised by the dataset's `Image` feature, which encodes
them with TensorFlow (not installed), so, as in test_sources.py, the tests pass mock_data an
`as_data_source_fn` whose records hold PIL-encoded PNG/JPEG bytes (what a prepared copy holds;
tfds's `Image` feature takes encoded bytes without TensorFlow). Record i shows the number i in its
pixels, so that splits can be checked by content. `policy=USE_FILES` reads the real metadata,
written into tmp_path, which is also what makes tlx see the dataset as prepared.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tests.data.tfds_mock import Records, write_metadata
from tlx.data import fashion_mnist, hash_split, image_sources, sources

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse"] + [
    "ship", "truck",
]  # fmt: skip
# tfds reads cifar10's names from the download when it prepares; a prepared copy holds these.
LABEL_NAMES = {"cifar10": CIFAR10_NAMES}
SPLIT_SIZES = {
    "tf_flowers": {"train": 50},
    "cifar10": {"train": 40, "test": 10},
    "fashion_mnist": {"train": 30, "test": 10},
}


def pixels_of(name, split, i) -> np.ndarray:
    """Record i's image: 5 * i in its top-left 8x8 block (survives JPEG), 100 below if test."""
    shape = {"cifar10": (32, 32, 3), "fashion_mnist": (28, 28, 1)}.get(name, (20 + i % 7, 30, 3))
    image = np.zeros(shape, np.uint8)
    image[:8, :8] = 5 * i
    image[8:16, :8] = 100 if split == "test" else 0
    return image


def encode(image: np.ndarray, format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(buffer, format=format)
    return buffer.getvalue()


def fake_records(name, order=None):
    """as_data_source_fn for mock_data; `order` permutes the records (a differently shuffled
    copy)."""

    def as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
        assert deserialize_method == tfds.decode.DeserializeMethod.RAW_BYTES
        features = builder.info.features
        num_classes = features["label"].num_classes
        count = builder.info.splits[split].num_examples
        records = Records()
        for i in order if order is not None else range(count):
            fmt = "JPEG" if name == "tf_flowers" else "PNG"
            example = {"image": encode(pixels_of(name, split, i), fmt), "label": i % num_classes}
            if "id" in features:
                example["id"] = f"{split}_{i}"
            records.append(features.serialize_example(example))
        return records

    return as_data_source


@pytest.fixture
def mocked(tmp_path):
    def mock(name, order=None):
        write_metadata(name, tmp_path, SPLIT_SIZES[name], label_names=LABEL_NAMES.get(name))
        return tfds.testing.mock_data(
            policy=tfds.testing.MockPolicy.USE_FILES,
            data_dir=str(tmp_path),
            as_data_source_fn=fake_records(name, order),
        )

    return mock


def number(image: np.ndarray) -> int:
    return int(round(image[:8, :8].mean() / 5))


def numbers(source) -> list[int]:
    """The record numbers of a split, read back from the pixels."""
    return sorted(number(source[i]["image"]) for i in range(len(source)))


@pytest.mark.parametrize(
    "name, tlx_name, sizes",
    [
        ("tf_flowers", "tf_flowers", {"train": 40, "validation": 5, "test": 5}),
        ("cifar10", "cifar10", {"train": 36, "validation": 4, "test": 10}),
        ("fashion_mnist", "fashion_mnist_tfds", {"train": 27, "validation": 3, "test": 10}),
    ],
)
def test_splits_records_and_labels(mocked, tmp_path, name, tlx_name, sizes):
    with mocked(name):
        splits = {s: image_sources.load_image_source(tlx_name, s, str(tmp_path)) for s in sizes}
        names = image_sources.image_label_names(tlx_name, str(tmp_path))
    assert {s: len(source) for s, source in splits.items()} == sizes
    carved = [numbers(splits[s]) for s in sizes if name == "tf_flowers" or s != "test"]
    assert sorted(sum(carved, [])) == list(range(SPLIT_SIZES[name]["train"]))  # a partition
    if name != "tf_flowers":
        assert numbers(splits["test"]) == list(range(10))
        assert all(splits["test"][i]["image"][8:16, :8].min() == 100 for i in range(10))
    for source in splits.values():
        record = source[0]
        assert record["image"].dtype == np.uint8 and record["image"].ndim == 3
        assert record["label"] == number(record["image"]) % len(names)  # labels stay attached
        assert source.labels.tolist() == [source[i]["label"] for i in range(len(source))]
    channels = 1 if name == "fashion_mnist" else 3
    assert splits["train"][0]["image"].shape[2] == channels
    assert len(names) == {"tf_flowers": 5, "cifar10": 10, "fashion_mnist": 10}[name]
    if name == "cifar10":
        assert names == CIFAR10_NAMES
        assert isinstance(splits["train"], image_sources.ArrayImageSource)
    if name == "tf_flowers":
        assert names == ["dandelion", "daisy", "tulips", "sunflowers", "roses"]
        assert isinstance(splits["train"], image_sources.EncodedImageSource)
        assert {splits["train"][i]["image"].shape[0] for i in range(7)} > {20}  # own sizes


@pytest.mark.parametrize("name, tlx_name", [("tf_flowers", "tf_flowers"), ("cifar10", "cifar10")])
def test_carved_splits_ignore_record_order(mocked, tmp_path, name, tlx_name):
    count = SPLIT_SIZES[name]["train"]
    shuffled = np.random.default_rng(0).permutation(count)
    by_order = []
    for order in (None, shuffled):
        with mocked(name, order):
            by_order.append(
                {
                    s: numbers(image_sources.load_image_source(tlx_name, s, str(tmp_path)))
                    for s in ("train", "validation")
                }  # fmt: skip
            )
    assert by_order[0] == by_order[1]


def test_fashion_mnist_tfds_validation_follows_the_local_rule(mocked, tmp_path):
    with mocked("fashion_mnist"):
        validation = image_sources.load_image_source(
            "fashion_mnist_tfds", "validation", str(tmp_path)
        )
    train_images = np.stack([pixels_of("fashion_mnist", "train", i)[..., 0] for i in range(30)])
    expected = hash_split.rank_split((im.tobytes() for im in train_images), [("v", 3)], "t")["v"]
    assert numbers(validation) == sorted(expected.tolist())
    # The local builder's rule is this one with 6,000 of 60,000, on the same pixel bytes.
    assert round(0.1 * 60_000) == fashion_mnist.NUM_VALIDATION


def test_unprepared_dataset_names_data_dir_and_command(tmp_path):
    with pytest.raises(sources.DatasetNotPreparedError) as error:
        image_sources.load_image_source("tf_flowers", "train", data_dir=str(tmp_path))
    message = str(error.value)
    assert str(tmp_path) in message
    assert f"tfds build tf_flowers --data_dir={tmp_path} --file_format=array_record" in message


def test_dataset_prepared_only_as_tfrecord_is_refused(tmp_path):
    write_metadata(
        "cifar10", tmp_path, {"train": 3, "test": 1}, "tfrecord", label_names=CIFAR10_NAMES
    )
    with pytest.raises(sources.DatasetNotPreparedError, match="stored only as"):
        image_sources.load_image_source("cifar10", "train", data_dir=str(tmp_path))


def test_unknown_names_and_splits(mocked, tmp_path):
    with pytest.raises(KeyError, match="Unknown image dataset"):
        image_sources.load_image_source("imagenet2012", "train")
    with mocked("cifar10"), pytest.raises(KeyError, match="no split 'unsupervised'"):
        image_sources.load_image_source("cifar10", "unsupervised", str(tmp_path))
