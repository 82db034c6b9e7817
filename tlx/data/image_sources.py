"""Named image-classification datasets as random-access sources of `{"image", "label"}`.

`image` is uint8 [H, W, C] with C = 1 (grayscale) or 3 (RGB), `label` an int. Every dataset is
read through tfds data sources (ArrayRecord), so reading needs no TensorFlow.

- `fashion_mnist`: the local Debian files, prepared on first use (`fashion_mnist.py`): train
  54,000 / validation 6,000 / test 10,000.
- `image_folder:<path>`: a folder of class subfolders, prepared on first use (`image_folder.py`).
- `mnist_5k`, `uci_digits` (`digits.py`), `fashion_mnist_c/<corruption>/<severity>`
  (`fashion_mnist_c.py`) and `fashion_mnist_m` (`fashion_mnist_m.py`): the domain-adaptation
  benchmarks' digits, corrupted Fashion-MNIST and Fashion-MNIST on photo backgrounds, from
  packaged files, prepared on first use.
- `fashion_mnist_tfds`, `cifar10`, `tf_flowers`: tfds's own datasets, which must already be
  prepared in the data_dir (their download code is tfds's). Splits the dataset lacks are carved
  out of its train split by `hash_split.rank_split` on each image's content (decoded pixels for
  the fixed-size datasets, the stored JPEG bytes for tf_flowers), never by record position, which
  tfds shuffles when it writes. Sizes are exact fractions of that train split:
    fashion_mnist_tfds  train 54,000 / validation 6,000 (10%) / test 10,000: the same rule and
                        key as `fashion_mnist`, hence the same validation images;
    cifar10             train 45,000 / validation 5,000 (10%) / test 10,000;
    tf_flowers          (one split of 3,670) train 2,936 / validation 367 / test 367 (10% each).

Fixed-size datasets are decoded once into memory (`images.ArrayImageSource`: 55 MB Fashion-MNIST,
184 MB CIFAR-10); variable-size ones are decoded with PIL on every read (`EncodedImageSource`).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.proto import tf_example_pb2

from tlx.data import fashion_mnist_c, hash_split, image_folder, sources
from tlx.data.images import ArrayImageSource
from tlx.data.sources import default_data_dir

FOLDER_PREFIX = "image_folder:"
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """How one tfds dataset maps onto tlx's image records and split names."""

    tfds_name: str
    # tlx split -> tfds split it reads (or is carved from)
    splits: Mapping[str, str]
    # tlx splits carved out of a tfds split: (name, fraction of that split), in cutting order;
    # the tlx splits reading that tfds split that are not listed get the rest.
    carve: tuple[tuple[str, float], ...] = ()
    image_field: str = "image"
    label_field: str = "label"
    builder_module: str | None = None
    prepare_on_first_use: bool = False


IMAGE_DATASETS: Mapping[str, ImageDataset] = MappingProxyType(
    {
        "fashion_mnist": ImageDataset(
            tfds_name="fashion_mnist_local",
            splits={"train": "train", "validation": "validation", "test": "test"},
            builder_module="tlx.data.fashion_mnist",
            prepare_on_first_use=True,
        ),
        "mnist_5k": ImageDataset(
            tfds_name="mnist5k_local",
            splits={s: s for s in SPLITS},
            builder_module="tlx.data.digits",
            prepare_on_first_use=True,
        ),
        "uci_digits": ImageDataset(
            tfds_name="uci_digits_local",
            splits={s: s for s in SPLITS},
            builder_module="tlx.data.digits",
            prepare_on_first_use=True,
        ),
        "fashion_mnist_m": ImageDataset(
            tfds_name="fashion_mnist_m_local",
            splits={s: s for s in SPLITS},
            builder_module="tlx.data.fashion_mnist_m",
            prepare_on_first_use=True,
        ),
        "fashion_mnist_tfds": ImageDataset(
            tfds_name="fashion_mnist",
            splits={"train": "train", "validation": "train", "test": "test"},
            carve=(("validation", 0.1),),
        ),
        "cifar10": ImageDataset(
            tfds_name="cifar10",
            splits={"train": "train", "validation": "train", "test": "test"},
            carve=(("validation", 0.1),),
        ),
        "tf_flowers": ImageDataset(
            tfds_name="tf_flowers",
            splits={"train": "train", "validation": "train", "test": "train"},
            carve=(("test", 0.1), ("validation", 0.1)),
        ),
    }
)


def decode(encoded: bytes) -> np.ndarray:
    """JPEG/PNG/... bytes -> uint8 [H, W, 1] for grayscale, else [H, W, 3] (RGB)."""
    with Image.open(io.BytesIO(encoded)) as image:
        if image.mode == "L":
            return np.asarray(image)[:, :, None]
        return np.asarray(image.convert("RGB"))


class EncodedImageSource:
    """Random-access split of a tfds dataset, each image decoded with PIL when read.

    Holds the tfds data source of raw records (read lazily, so a large folder is never in memory
    at once), the positions of this split's records in it, and every label (read once, for
    stratified subsets).
    """

    def __init__(self, records, positions, labels, image_field="image", name="", split=""):
        self.records = records
        self.positions = np.asarray(positions, np.int64)
        self.labels = np.asarray(labels, np.int32)
        self.image_field = image_field
        self.name = name
        self.split = split

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict:
        record = self.records[int(self.positions[index])]
        feature = tf_example_pb2.Example.FromString(record).features.feature
        return {
            "image": decode(feature[self.image_field].bytes_list.value[0]),
            "label": int(self.labels[index]),
        }

    def __repr__(self) -> str:
        return f"EncodedImageSource({self.name!r}, split={self.split!r}, {len(self)} examples)"


_READ_CHUNK = 4096  # records per bulk read


def _read_fields(records, image_field: str, label_field: str) -> tuple[list[bytes], np.ndarray]:
    """(image bytes, labels) of every record, in record order, from raw tf.train.Example bytes."""
    images, labels = [], []
    for start in range(0, len(records), _READ_CHUNK):
        keys = list(range(start, min(start + _READ_CHUNK, len(records))))
        for serialized in records.__getitems__(keys):
            feature = tf_example_pb2.Example.FromString(serialized).features.feature
            images.append(feature[image_field].bytes_list.value[0])
            labels.append(feature[label_field].int64_list.value[0])
    return images, np.asarray(labels, np.int64)


def is_image_dataset(name: str) -> bool:
    """Whether `name` names an image-classification dataset (a known one or a prefixed one)."""
    return name in IMAGE_DATASETS or name.startswith((FOLDER_PREFIX, fashion_mnist_c.PREFIX))


def _spec(name: str) -> ImageDataset:
    if name.startswith(FOLDER_PREFIX):
        return ImageDataset(tfds_name="local_image_folder", splits={s: s for s in SPLITS})
    if name.startswith(fashion_mnist_c.PREFIX):
        return ImageDataset(
            tfds_name=fashion_mnist_c.tfds_name(name),  # checks the corruption and severity
            splits={s: s for s in SPLITS},
            builder_module="tlx.data.fashion_mnist_c",
            prepare_on_first_use=True,
        )
    if name not in IMAGE_DATASETS:
        raise KeyError(
            f"Unknown image dataset {name!r}; known: {sorted(IMAGE_DATASETS)}, "
            f"'{fashion_mnist_c.PREFIX}<corruption>/<severity>' and "
            f"'{FOLDER_PREFIX}<path to a folder of class subfolders>'."
        )
    return IMAGE_DATASETS[name]


def _builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The dataset's tfds builder, prepared in data_dir (local datasets prepare on first use)."""
    spec = _spec(name)
    data_dir = data_dir or default_data_dir()
    if name.startswith(FOLDER_PREFIX):
        return image_folder.builder(name[len(FOLDER_PREFIX) :], data_dir)
    return sources.prepared_builder(spec, data_dir)


def _positions(spec: ImageDataset, split: str, keys: Sequence[bytes]) -> np.ndarray | None:
    """Record positions of a carved tlx split within its tfds split (None: the whole split)."""
    if not spec.carve:
        return None
    carved_from = spec.splits[spec.carve[0][0]]  # every carved split reads the same tfds split
    if spec.splits[split] != carved_from:
        return None
    carved = {name for name, _ in spec.carve}
    (rest,) = [s for s, t in spec.splits.items() if t == carved_from and s not in carved]
    sizes = [(name, round(fraction * len(keys))) for name, fraction in spec.carve]
    return hash_split.rank_split(keys, sizes, rest=rest)[split]


def load_image_source(name: str, split: str, data_dir: str | None = None):
    """Random-access source (len, [i]) of `{"image": uint8 [H, W, C], "label": int}`.

    `name` is a key of IMAGE_DATASETS or `image_folder:<path>`; `split` a tlx split name (train,
    validation, test). Sources have a `labels` array (every example's label, for stratified
    subsets).
    """
    spec = _spec(name)
    builder = _builder(name, data_dir)
    splits = {s: t for s, t in spec.splits.items() if t in builder.info.splits}
    if split not in splits:
        raise KeyError(f"{name} has no split {split!r}; available: {sorted(splits)}.")
    features = builder.info.features
    image_feature = features[spec.image_field]
    if not isinstance(features[spec.label_field], tfds.features.ClassLabel) or not isinstance(
        image_feature, tfds.features.Image | tfds.features.Tensor
    ):
        raise TypeError(
            f"{name}: expected an Image or Tensor field {spec.image_field!r} and a ClassLabel "
            f"field {spec.label_field!r}; the dataset has {features}."
        )
    records = builder.as_data_source(
        split=splits[split], deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
    )
    encoded, labels = _read_fields(records, spec.image_field, spec.label_field)
    if len(labels) and labels.min() < 0:
        raise ValueError(f"{name} split {splits[split]!r} has unlabelled examples (label -1).")

    shape = image_feature.shape
    if None not in shape:  # fixed size: decode everything once
        if isinstance(image_feature, tfds.features.Tensor):
            pixels = np.frombuffer(b"".join(encoded), np.uint8).reshape(-1, *shape)
        else:
            pixels = np.stack([decode(b) for b in encoded]) if encoded else np.zeros((0, *shape))
        if pixels.shape[1:] != tuple(shape):
            raise ValueError(f"{name}: images of shape {pixels.shape[1:]}, expected {shape}.")
        positions = _positions(spec, split, [image.tobytes() for image in pixels])
        if positions is not None:
            pixels, labels = pixels[positions], labels[positions]
        return ArrayImageSource(pixels.astype(np.uint8), labels, name=name, split=split)

    positions = _positions(spec, split, encoded)
    if positions is None:
        positions = np.arange(len(encoded))
    return EncodedImageSource(
        records, positions, labels[positions], spec.image_field, name=name, split=split
    )


def image_label_names(name: str, data_dir: str | None = None) -> list[str]:
    """Class names in label-id order, from the dataset's tfds metadata."""
    spec = _spec(name)
    return list(_builder(name, data_dir).info.features[spec.label_field].names)


def image_channels(name: str, data_dir: str | None = None) -> int | None:
    """Channels of the dataset's images from its tfds metadata (None where it does not say)."""
    spec = _spec(name)
    return _builder(name, data_dir).info.features[spec.image_field].shape[-1]


def image_num_classes(name: str, data_dir: str | None = None) -> int:
    return len(image_label_names(name, data_dir))
