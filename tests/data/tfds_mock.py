"""What test_sources.py and test_image_sources.py share to mock a prepared tfds dataset.

A prepared dataset is its builder's metadata (dataset_info.json and the split sizes) in data_dir;
tlx checks for it before reading, and `tfds.testing.mock_data(policy=USE_FILES)` reads it. The
records themselves come from the tests' `as_data_source_fn`, as `Records`.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds


def write_metadata(name, data_dir, split_sizes, file_format="array_record", label_names=None):
    """Writes the dataset_info a prepared dataset has, without any records.

    label_names: for datasets whose class names tfds reads from the download when it prepares
    (cifar10), the names a prepared copy would hold.
    """
    builder = tfds.builder(name, data_dir=str(data_dir), file_format=file_format)
    if label_names is not None:
        builder.info.features["label"].names = label_names
    template = tfds.core.ShardedFileTemplate(
        data_dir=builder.data_dir,
        dataset_name=builder.name,
        filetype_suffix=tfds.core.FileFormat(file_format).file_suffix,
    )
    builder.info.set_splits(
        tfds.core.SplitDict(
            [
                tfds.core.SplitInfo(
                    name=split,
                    shard_lengths=[size],
                    num_bytes=0,
                    filename_template=template.replace(split=split),
                )
                for split, size in split_sizes.items()
            ]
        )
    )
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)


class Records(list):
    """A list of serialised records with the batched read that ArrayRecord sources have."""

    def __getitems__(self, keys):
        return [self[k] for k in keys]
