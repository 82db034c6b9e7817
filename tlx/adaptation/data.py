"""The target side of an adaptation run: its unlabelled stream, its statistics pass and its
evaluation splits, checked against the source before anything is computed."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence

import grain

from tlx.data import image_sources, images
from tlx.data.sampling import Shard, check_sizes, train_index_batches
from tlx.errors import ConfigError
from tlx.spec import RunSpec


def target_seed(seed: int) -> int:
    """The target stream's own seed, derived from the run's (its order never mirrors the
    source's, and a sweep over seeds moves both)."""
    return int.from_bytes(hashlib.sha1(f"target/{seed}".encode()).digest()[:4], "big")


class WithoutLabels:
    """A source whose examples carry label 0 in place of their own: the batch maker needs an int,
    and `drop_labels` removes the column, so no target label can reach a train step."""

    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.source[index]["image"], "label": 0}


def drop_labels(batch: Mapping) -> dict:
    return {k: v for k, v in batch.items() if k != "label"}


@dataclasses.dataclass
class TargetData:
    name: str
    statistics_batches: Sequence[dict]  # the unlabelled split in order, no augmentation
    train_batches: grain.MapDataset  # random access by step: {"image"} rows, unlabelled
    eval_batches: dict[str, Sequence[dict]]  # "target_<split>" -> labelled batches (report only)
    strong_batches: grain.MapDataset | None = None  # pseudo_label: a strong view of the same


def check_same_task(
    spec: RunSpec, source_names: Sequence[str], target_names: Sequence[str], channels: tuple
) -> None:
    """The target has the source's label space and image channels, or a ConfigError."""
    adapt = spec.adapt
    if list(source_names) != list(target_names):
        raise ConfigError(
            f"config.adapt.target={adapt.target!r} has the labels {list(target_names)} and the "
            f"source config.data.name={spec.data.name!r} {list(source_names)}; adaptation keeps "
            "the label space, so the two must name the same classes in the same order. Choose "
            "a target with the source's classes."
        )
    if None not in channels and channels[0] != channels[1]:
        raise ConfigError(
            f"config.adapt.target={adapt.target!r} has {channels[1]}-channel images and the "
            f"source {spec.data.name!r} {channels[0]}-channel ones; adapt between datasets of "
            "one image kind (grayscale to grayscale, colour to colour)."
        )


def build_target_data(
    spec: RunSpec, preprocessing, source_names: Sequence[str], shard: Shard
) -> TargetData:
    adapt, data = spec.adapt, spec.data
    if not image_sources.is_image_dataset(adapt.target):
        raise ConfigError(
            f"config.adapt.target={adapt.target!r} is not an image dataset tlx knows; adaptation "
            "reads images (e.g. 'uci_digits', 'fashion_mnist_c/gaussian_noise/5')."
        )
    try:
        target_names = image_sources.image_label_names(adapt.target, data.data_dir)
    except KeyError as e:  # e.g. a corruption or severity that does not exist
        raise ConfigError(f"config.adapt.target: {e.args[0]}") from e

    def split(name: str):
        try:
            return image_sources.load_image_source(adapt.target, name, data.data_dir)
        except KeyError as e:
            raise ConfigError(f"config.adapt: {e.args[0]}") from e

    channels = tuple(
        image_sources.image_channels(name, data.data_dir) for name in (data.name, adapt.target)
    )
    check_same_task(spec, source_names, target_names, channels)
    stream = split(adapt.target_split)
    unlabelled = WithoutLabels(stream)
    statistics = images.make_image_eval_batches(
        unlabelled, preprocessing, batch_size=adapt.statistics_batch_size
    ).map(drop_labels)
    seed, batch_size = target_seed(spec.seed), adapt.target_batch_size or spec.batch_size
    check_sizes(unlabelled, batch_size)
    index_batches = train_index_batches(len(unlabelled), batch_size, seed)

    def view(augment: str, crop_scale, augment_seed: int) -> grain.MapDataset:
        """The stream's images under one augmentation (the same images at every step)."""
        make = images.MakeImageBatch(
            unlabelled, preprocessing, augment=augment, seed=augment_seed,
            crop_scale=tuple(crop_scale), shard=shard,
        )  # fmt: skip
        return index_batches.map_with_index(make).map(drop_labels)

    train = view(data.augment, data.crop_scale, seed)
    strong = None
    if adapt.method == "pseudo_label":  # FixMatch's second view of the same images
        strong = view(adapt.strong_augment, adapt.strong_crop_scale, seed + 1)
    evals = {
        f"target_{name}": images.make_image_eval_batches(
            split(name), preprocessing, batch_size=spec.eval_batch_size, shard=shard
        )
        for name in adapt.eval_splits
    }
    return TargetData(adapt.target, statistics, train, evals, strong)
