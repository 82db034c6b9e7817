"""Detection datasets by `data.name`: their class names and random-access splits.

- ``fashiondet``: FashionDet scenes (tlx.data.fashiondet), generated on the fly, 160 px;
  train/validation/test of FASHIONDET_SIZES scenes (`data.train_examples` takes fewer train ones).
- ``deepforest``: aerial tree crowns, train and validation tiles from one site, test images from
  two others (tlx.data.deepforest_trees);
- ``voc/2007``, ``voc/2012``: tfds's Pascal VOC, when prepared as ArrayRecord in `data.data_dir`
  (``tfds build voc/2007 --file_format=array_record``; its 20 classes, difficult objects ignored);
- ``detection_folder:<path>``: a folder of images with Pascal VOC XML boxes, prepared once as
  tfds records in `data.data_dir` (tlx.data.detection_folder); its splits as there.

Examples are ``{"image", "boxes" (xyxy pixels), "labels"}``, what tlx.detection.batches takes.
"""

from __future__ import annotations

import numpy as np

from tlx.errors import ConfigError

FASHIONDET_SIZES = {"train": 20_000, "validation": 500, "test": 500}
FASHIONDET_SCENE_SIZE = 160
FOLDER_PREFIX = "detection_folder:"


TFDS_DETECTION = {"voc/2007", "voc/2012"}


def _tfds_builder(name: str, data_dir: str | None):
    """A prepared tfds detection dataset (never downloaded here: it names the command)."""
    import types

    from tlx.data.sources import default_data_dir, prepared_builder

    spec = types.SimpleNamespace(tfds_name=name, builder_module="", prepare_on_first_use=False)
    return prepared_builder(spec, data_dir or default_data_dir())


def _folder_builder(name: str, data_dir: str | None):
    from tlx.data import detection_folder
    from tlx.data.sources import default_data_dir

    return detection_folder.builder(name[len(FOLDER_PREFIX) :], data_dir or default_data_dir())


def detection_label_names(name: str, data_dir: str | None = None) -> tuple[str, ...]:
    if name == "fashiondet":
        from tlx.data.fashiondet import LABEL_NAMES

        return tuple(LABEL_NAMES)
    if name == "deepforest":
        from tlx.data.deepforest_trees import LABEL_NAMES

        return LABEL_NAMES
    if name in TFDS_DETECTION:
        return tuple(_tfds_builder(name, data_dir).info.features["objects"]["label"].names)
    if name.startswith(FOLDER_PREFIX):
        return tuple(_folder_builder(name, data_dir).info.features["objects"]["label"].names)
    raise ConfigError(
        f"data.name={name!r} is not a detection dataset; expected 'fashiondet', 'deepforest', "
        f"{', '.join(map(repr, sorted(TFDS_DETECTION)))} or "
        f"'{FOLDER_PREFIX}<folder of images with VOC XML>'."
    )


def load_detection_source(name: str, split: str, data_dir: str | None = None, seed: int = 0):
    """A random-access split of detection examples."""
    if name == "fashiondet":
        from tlx.data.fashiondet import FashionDetSource

        if split not in FASHIONDET_SIZES:
            raise ConfigError(f"FashionDet has splits {tuple(FASHIONDET_SIZES)}, not {split!r}.")
        # One scene set for every run: the training seed shuffles and augments, as for a
        # dataset on disk; it does not draw other scenes.
        return FashionDetSource(split, FASHIONDET_SIZES[split], seed=0, size=FASHIONDET_SCENE_SIZE)
    if name == "deepforest":
        from tlx.data.deepforest_trees import DeepforestSource

        return DeepforestSource(split)
    from tlx.detection.batches import TfdsDetectionSource

    tfds_name = name in TFDS_DETECTION
    builder = _tfds_builder(name, data_dir) if tfds_name else _folder_builder(name, data_dir)
    if split not in builder.info.splits:
        raise ConfigError(
            f"{name}: no {split!r} split (it has {sorted(builder.info.splits)}); put images in "
            "train/, validation/ and test/ folders, or let the hash split make all three."
        )
    return TfdsDetectionSource(builder.as_data_source(split=split))


class SeededSubset:
    """`n` examples of a source drawn without replacement with `seed` (data.train_examples)."""

    def __init__(self, source, n: int, seed: int):
        self.source = source
        self.indices = np.sort(np.random.default_rng(seed).permutation(len(source))[:n])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.source[int(self.indices[index])]

    def __repr__(self) -> str:
        return f"{len(self)} examples of {self.source!r}"
