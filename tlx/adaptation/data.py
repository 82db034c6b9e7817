"""The target side of an adaptation run: its unlabelled stream, its statistics pass and its
evaluation splits, checked against the source before anything is computed."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence

import grain

from tlx.data import image_sources, images, sources, text
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
        return {**self.source[index], "label": 0}


def relabelled(source, source_ids: Sequence[int]):
    """`source` with its label ids turned into the source's (unchanged for the identity)."""
    return (
        source
        if list(source_ids) == list(range(len(source_ids)))
        else Relabelled(source, source_ids)
    )


class Relabelled:
    """A labelled target source with its label ids turned into the source's (adapt.label_map)."""

    def __init__(self, source, source_ids: Sequence[int]):
        self.source, self.source_ids = source, list(source_ids)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        example = self.source[index]
        return {**example, "label": self.source_ids[example["label"]]}


def drop_labels(batch: Mapping) -> dict:
    return {k: v for k, v in batch.items() if k != "label"}


@dataclasses.dataclass
class TargetData:
    name: str
    statistics_batches: Sequence[dict]  # images: the unlabelled split in order, no augmentation
    train_batches: grain.MapDataset  # random access by step: the model's inputs, unlabelled
    eval_batches: dict[str, Sequence[dict]]  # "target_<split>" -> labelled batches (report only)
    strong_batches: grain.MapDataset | None = None  # pseudo_label: a strong view of the same


def label_correspondence(
    spec: RunSpec, source_names: Sequence[str], target_names: Sequence[str]
) -> list[int]:
    """Each target label id's source label id: the identity for the same names in the same order,
    else what config.adapt.label_map ("target:source,...") declares; a ConfigError otherwise."""
    adapt = spec.adapt
    if not adapt.label_map:
        if list(source_names) == list(target_names):
            return list(range(len(target_names)))
        pairs = ",".join(f"{t}:{s}" for t, s in zip(target_names, source_names))
        raise ConfigError(
            f"config.adapt.target={adapt.target!r} has the labels {list(target_names)} and the "
            f"source config.data.name={spec.data.name!r} {list(source_names)}; adaptation keeps "
            "the label space. Choose a target with the source's classes, or, when they are the "
            "same classes under other names, declare which is which with config.adapt."
            f"label_map (e.g. {pairs!r})."
        )
    pairs = [p.split(":") for p in adapt.label_map.split(",")]
    mapping = {p[0].strip(): p[1].strip() for p in pairs if len(p) == 2}
    complete = len(pairs) == len(mapping) == len(target_names) and set(mapping) == set(target_names)
    if not complete or sorted(mapping.values()) != sorted(source_names):
        raise ConfigError(
            f"config.adapt.label_map={adapt.label_map!r} must pair every target label "
            f"{list(target_names)} with a different source label {list(source_names)}, as "
            "'target:source,...'."
        )
    return [list(source_names).index(mapping[name]) for name in target_names]


def check_channels(spec: RunSpec, channels: tuple) -> None:
    if None not in channels and channels[0] != channels[1]:
        raise ConfigError(
            f"config.adapt.target={spec.adapt.target!r} has {channels[1]}-channel images and the "
            f"source {spec.data.name!r} {channels[0]}-channel ones; adapt between datasets of "
            "one image kind (grayscale to grayscale, colour to colour)."
        )


def build_target_data(spec: RunSpec, bundle, source_names: Sequence[str], shard: Shard):
    """The target's streams for the model in `bundle` (images or tokens), checked first."""
    target = spec.adapt.target
    if bundle.tokenizer is not None:
        if target not in sources.TEXT_DATASETS:
            raise ConfigError(
                f"config.adapt.target={target!r} is not a text dataset tlx knows; a text model "
                f"adapts to one of {sorted(sources.TEXT_DATASETS)}."
            )
        return _text_target(spec, bundle.tokenizer, source_names, shard)
    if not image_sources.is_image_dataset(target):
        raise ConfigError(
            f"config.adapt.target={target!r} is not an image dataset tlx knows; adaptation "
            "reads images (e.g. 'uci_digits', 'fashion_mnist_c/gaussian_noise/5')."
        )
    return _image_target(spec, bundle.preprocessing, source_names, shard)


def _loader(load):
    """`load(split)` with a missing split or dataset variant as a ConfigError."""

    def split(name: str):
        try:
            return load(name)
        except KeyError as e:  # e.g. a corruption or severity that does not exist
            raise ConfigError(f"config.adapt: {e.args[0]}") from e

    return split


def _stream_seed_and_size(spec: RunSpec, unlabelled) -> tuple[int, int]:
    batch_size = spec.adapt.target_batch_size or spec.batch_size
    check_sizes(unlabelled, batch_size)
    return target_seed(spec.seed), batch_size


def _text_target(spec: RunSpec, tokenizer, source_names, shard: Shard) -> TargetData:
    adapt, data = spec.adapt, spec.data
    target_names = sources.label_names(adapt.target, data.data_dir)
    ids = label_correspondence(spec, source_names, target_names)
    split = _loader(lambda name: sources.load_text_source(adapt.target, name, data.data_dir))
    unlabelled = WithoutLabels(split(adapt.target_split))
    seed, batch_size = _stream_seed_and_size(spec, unlabelled)
    common = dict(max_length=int(data.max_length), buckets=tuple(data.buckets), shard=shard)
    train = text.make_train_batches(
        unlabelled, tokenizer, batch_size=batch_size, seed=seed, **common
    ).map(drop_labels)
    # Text has no augmentation: pseudo-labels' second view is the same tokens, which the one
    # forward over the concatenation runs under other dropout masks.
    strong = train if adapt.method == "pseudo_label" else None
    evals = {
        f"target_{name}": text.make_eval_batches(
            relabelled(split(name), ids), tokenizer, batch_size=spec.eval_batch_size, **common
        )
        for name in adapt.eval_splits
    }
    return TargetData(adapt.target, (), train, evals, strong)


def _image_target(spec: RunSpec, preprocessing, source_names, shard: Shard) -> TargetData:
    adapt, data = spec.adapt, spec.data
    try:
        target_names = image_sources.image_label_names(adapt.target, data.data_dir)
    except KeyError as e:  # e.g. a corruption or severity that does not exist
        raise ConfigError(f"config.adapt.target: {e.args[0]}") from e
    split = _loader(lambda name: image_sources.load_image_source(adapt.target, name, data.data_dir))
    ids = label_correspondence(spec, source_names, target_names)
    channels = tuple(
        image_sources.image_channels(name, data.data_dir) for name in (data.name, adapt.target)
    )
    check_channels(spec, channels)
    unlabelled = WithoutLabels(split(adapt.target_split))
    statistics = images.make_image_eval_batches(
        unlabelled, preprocessing, batch_size=adapt.statistics_batch_size
    ).map(drop_labels)
    seed, batch_size = _stream_seed_and_size(spec, unlabelled)
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
            relabelled(split(name), ids),
            preprocessing,
            batch_size=spec.eval_batch_size,
            shard=shard,
        )
        for name in adapt.eval_splits
    }
    return TargetData(adapt.target, statistics, train, evals, strong)
