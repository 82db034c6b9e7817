"""load_text_source: uniform records, split mapping, and errors, with tfds mock data.

glue/sst2 and imdb_reviews cannot be downloaded here, so they are mocked with
`tfds.testing.mock_data`. Its default random-access mock answers `source[i]` but not the batched
`source.__getitems__(keys)` that tlx reads with (tfds 4.9.10 assigns an unbound function to a
MagicMock attribute), so the tests use mock_data's `as_data_source_fn` hook instead: the records
are serialised by the dataset's own tfds features, and each text names its tfds split, so the
split mapping is checked by content. `policy=USE_FILES` reads the real builder metadata, written
into tmp_path, which is also what makes tlx see the dataset as prepared.
"""

import os

import pytest
import tensorflow_datasets as tfds
import tensorflow_datasets.text.glue  # noqa: F401  (registers glue; tlx imports it on use)

from tests.data.tfds_mock import Records, write_metadata
from tlx.data import sources

SPLIT_SIZES = {
    "glue/sst2": {"train": 12, "validation": 5, "test": 7},
    "imdb_reviews": {"train": 9, "test": 6, "unsupervised": 4},
}
LABEL_NAMES = {"glue/sst2": ["negative", "positive"], "imdb_reviews": ["neg", "pos"]}


def fake_records(label=None):
    """as_data_source_fn for mock_data: record i of split s has text '<dataset> <s> <i>'."""

    def as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
        assert deserialize_method == tfds.decode.DeserializeMethod.RAW_BYTES
        features = builder.info.features
        num_classes = features["label"].num_classes
        records = Records()
        for i in range(builder.info.splits[split].num_examples):
            example = {}
            for key, feature in features.items():
                if isinstance(feature, tfds.features.Text):
                    example[key] = f"{builder.name} {split} {i}"
                elif key == "label":
                    example[key] = i % num_classes if label is None else label
                else:
                    example[key] = 0
            records.append(features.serialize_example(example))
        return records

    return as_data_source


@pytest.fixture
def mocked(tmp_path):
    def mock(name, label=None):
        write_metadata(name, tmp_path, SPLIT_SIZES[name])
        return tfds.testing.mock_data(
            policy=tfds.testing.MockPolicy.USE_FILES,
            data_dir=str(tmp_path),
            as_data_source_fn=fake_records(label),
        )

    return mock


@pytest.mark.parametrize(
    "name, split, tfds_split",
    [
        ("glue/sst2", "train", "train"),
        ("glue/sst2", "validation", "validation"),
        ("glue/sst2", "test", "validation"),  # SST-2 test labels are hidden
        ("imdb_reviews", "train", "train"),
        ("imdb_reviews", "validation", "test"),  # IMDB has no validation split
        ("imdb_reviews", "test", "test"),
    ],
)
def test_split_mapping_and_uniform_records(mocked, tmp_path, name, split, tfds_split):
    with mocked(name):
        source = sources.load_text_source(name, split, data_dir=str(tmp_path))
        assert len(source) == SPLIT_SIZES[name][tfds_split]
        dataset = name.split("/")[0]  # builder.name: "glue" for glue/sst2
        assert [source[i] for i in range(3)] == [
            {"text": f"{dataset} {tfds_split} {i}", "label": i % 2} for i in range(3)
        ]
        assert sources.label_names(name, str(tmp_path)) == LABEL_NAMES[name]
        assert sources.num_classes(name, str(tmp_path)) == 2


def test_unlabelled_split_is_refused(mocked, tmp_path):
    with mocked("glue/sst2", label=-1), pytest.raises(ValueError, match="unlabelled"):
        sources.load_text_source("glue/sst2", "train", data_dir=str(tmp_path))


@pytest.mark.parametrize("name", ["glue/sst2", "imdb_reviews"])
def test_unprepared_dataset_names_data_dir_and_command(tmp_path, name):
    with pytest.raises(sources.DatasetNotPreparedError) as error:
        sources.load_text_source(name, "train", data_dir=str(tmp_path))
    message = str(error.value)
    assert str(tmp_path) in message
    assert f"tfds build {name} --data_dir={tmp_path} --file_format=array_record" in message


def test_dataset_prepared_only_as_tfrecord_is_refused(tmp_path):
    write_metadata("imdb_reviews", tmp_path, {"train": 3}, file_format="tfrecord")
    with pytest.raises(sources.DatasetNotPreparedError, match="stored only as"):
        sources.load_text_source("imdb_reviews", "train", data_dir=str(tmp_path))


def test_unknown_names_and_splits():
    with pytest.raises(KeyError, match="Unknown text dataset"):
        sources.load_text_source("sst5", "train")
    with pytest.raises(KeyError, match="no split"):
        sources.load_text_source("glue/sst2", "unsupervised")


def test_data_dir_defaults_to_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TLX_DATA_DIR", str(tmp_path))
    assert sources.default_data_dir() == str(tmp_path)
    monkeypatch.delenv("TLX_DATA_DIR")
    assert sources.default_data_dir() == os.path.expanduser("~/tensorflow_datasets")


def test_rotten_tomatoes_label_names(tmp_path_factory):
    data_dir = str(tmp_path_factory.getbasetemp() / "tlx_data")  # shared with the builder tests
    assert sources.label_names("rotten_tomatoes", data_dir) == ["rotten", "fresh"]
    assert sources.num_classes("rotten_tomatoes", data_dir) == 2
