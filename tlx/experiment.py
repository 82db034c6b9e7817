"""Assemble a run from its config: model + pretrained weights + plan + data.

This is the one place that reads config sections; the trainer receives a finished
:class:`Experiment` and never parses configs. Everything here is cheap and fails early: a wrong
name, a missing checkpoint or dataset, or a plan that does not fit the model raises before any
training compute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import grain
import jax

from tlx.config_checks import check_label_count, check_numbers
from tlx.data import sources, text
from tlx.data.sampling import CacheableExamples, Shard
from tlx.parallel_modes import check_mode
from tlx.tasks import Classification, Task, get_task
from tlx.transfer import feature_cache
from tlx.transfer.groups import assign_groups
from tlx.transfer.optim import check_schedules
from tlx.transfer.plans import Plan, build_plan
from tlx.tree import flatten
from tlx.zoo.registry import ModelBundle, build_model


@dataclasses.dataclass
class Experiment:
    config: Mapping
    model: ModelBundle
    plan: Plan
    label_names: Sequence[str]
    # random access: train_batches[step] is step's global batch (several processes: this
    # process's rows of it, and likewise for eval_batches; see tlx.data.sampling.Shard)
    train_batches: grain.MapDataset
    eval_batches: Mapping[str, Sequence[dict]]  # split -> finite list of batches with 'weight'
    # The training examples as fixed inputs, when they are (no random augmentation): what
    # config.feature_cache needs. None otherwise.
    cacheable: CacheableExamples | None = None
    # Distinct labelled training examples the run draws from (data.train_examples, or the
    # whole split); None without data.
    train_size: int | None = None
    # What the outputs are scored by and reported as (config.task; classification by default).
    task: Task = dataclasses.field(default_factory=Classification)

    @property
    def group_names(self) -> list[str]:
        return self.model.group_names


REQUIRED_KEYS = (
    "seed",
    "batch_size",
    "total_steps",
    "eval_every",
    "checkpoint_every",
    "plan",
    "model",
    "data",
    "optim",
)


def check_config(config: Mapping) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise ValueError(
            f"Config lacks required keys {missing}; every experiment sets {REQUIRED_KEYS}."
        )
    check_numbers(config)  # every number finite and in range, all problems in one message
    check_mode(config.get("parallel", "jit"))
    accum = int(config.get("grad_accum_steps", 1))
    if int(config["batch_size"]) % accum:
        raise ValueError(
            f"config.grad_accum_steps={accum} must divide config.batch_size="
            f"{config['batch_size']} (and each device's share of it)."
        )


def build_experiment(config: Mapping, *, with_data: bool = True) -> Experiment:
    check_config(config)
    task = get_task(config.get("task", "classification"))
    data_cfg = config["data"]
    data_dir = data_cfg.get("data_dir") or None
    is_image = _is_image_dataset(data_cfg["name"])
    if is_image:
        from tlx.data import image_sources

        names = image_sources.image_label_names(data_cfg["name"], data_dir)
    else:
        names = sources.label_names(data_cfg["name"], data_dir)
    check_label_count(names, data_cfg["name"])
    bundle = build_model(config["model"], num_classes=len(names))

    # Groups and plan are checked against the real parameter tree before anything is trained.
    shapes = jax.eval_shape(bundle.init, jax.random.key(0))
    assign_groups(list(flatten(shapes["params"])), bundle.groups)
    plan = build_plan(bundle.group_names, config["plan"], int(config["total_steps"]))
    labels = [*bundle.group_names, *(f"{g}/bn" for g in bundle.group_names)]  # with affine BN
    check_schedules(config["optim"], labels, int(config["total_steps"]))

    _check_feature_cache(config, is_image)
    shard = process_shard(config)

    train_batches, eval_batches, cacheable, train_size = None, {}, None, None
    if with_data and is_image:
        train_batches, eval_batches, cacheable, train_size = _image_data(
            config, bundle, data_dir, shard
        )
    elif with_data:
        train_batches, eval_batches, cacheable, train_size = _text_data(
            config, bundle, data_dir, shard
        )
    return Experiment(
        config, bundle, plan, names, train_batches, eval_batches, cacheable, train_size, task
    )


def _train_size(data_cfg: Mapping, split_size: int) -> int:
    wanted = int(data_cfg.get("train_examples", 0))
    return min(wanted, split_size) if wanted else split_size


def process_shard(config: Mapping) -> Shard:
    """This process's rows of every batch (all of them for one process), with the checks a
    multi-process run needs before anything is built."""
    count = jax.process_count()
    if count == 1:
        return Shard()
    from tlx import parallel

    devices = count * jax.local_device_count()
    data_cfg = config["data"]
    sizes = {
        "config.batch_size": int(config["batch_size"]),
        "config.data.eval_batch_size": int(data_cfg.get("eval_batch_size", config["batch_size"])),
    }
    for what, size in sizes.items():
        if size % devices:
            raise ValueError(
                f"{what}={size} must be divisible by the processes x devices per process "
                f"({count} x {jax.local_device_count()} = {devices}) so that every device of "
                f"every process gets the same share; use a multiple of {devices}, e.g. "
                f"{devices * max(1, size // devices)}."
            )
    if config.get("parallel", "jit") != "jit":
        raise ValueError(
            f"config.parallel={config['parallel']!r} runs in one process, and this run has "
            f"{count}; use config.parallel='jit' across processes."
        )
    sharding = config.get("sharding") or {}
    if int(sharding.get("model_axis", 1)) != 1 or sharding.get("rules"):
        raise ValueError(
            "config.sharding (split parameters over a 'model' axis) is not supported with "
            f"several processes yet (this run has {count}); leave sharding.model_axis=1 and "
            "sharding.rules empty."
        )
    if config.get("feature_cache", "off") != "off":
        raise ValueError(
            f"config.feature_cache={config['feature_cache']!r} is not supported with several "
            f"processes (this run has {count}); set config.feature_cache='off'."
        )
    index, count = parallel.process_rows(parallel.make_mesh())
    return Shard(index, count)


def _check_feature_cache(config: Mapping, is_image: bool) -> None:
    """A feature cache needs inputs and frozen groups that compute the same thing every epoch."""
    if feature_cache.check_mode(config.get("feature_cache", "off")) == "off":
        return
    augment = config["data"].get("augment", "random_resized_crop")
    if is_image and augment != "none":
        raise feature_cache.FeatureCacheError(
            f"config.feature_cache={config['feature_cache']!r} needs the same input for an "
            f"example every epoch, but data.augment={augment!r} draws a new crop each time. "
            "Set data.augment='none' (or feature_cache='off')."
        )
    if config["model"].get("frozen_batchnorm", "frozen") != "frozen":
        raise feature_cache.FeatureCacheError(
            "config.feature_cache needs frozen groups that compute the same features every "
            f"epoch, but model.frozen_batchnorm={config['model']['frozen_batchnorm']!r} changes "
            "their BatchNorm layers during training. Set model.frozen_batchnorm='frozen' or "
            "feature_cache='off'."
        )


def _is_image_dataset(name: str) -> bool:
    from tlx.data import image_sources

    return name in image_sources.IMAGE_DATASETS or name.startswith("image_folder:")


def _image_data(config, bundle: ModelBundle, data_dir, shard: Shard):
    from tlx.data import image_sources, images

    data_cfg = config["data"]
    if bundle.preprocessing is None:
        raise ValueError(
            f"Dataset {data_cfg['name']!r} holds images but model {config['model']['name']!r} "
            "has no image preprocessing; use model.name='image_classifier'."
        )
    train_source = image_sources.load_image_source(data_cfg["name"], "train", data_dir)
    common = dict(
        batch_size=int(config["batch_size"]),
        seed=int(config["seed"]),
        num_examples=int(data_cfg.get("train_examples", 0)) or None,
    )
    augment = data_cfg.get("augment", "random_resized_crop")
    train = images.make_image_train_batches(
        train_source,
        bundle.preprocessing,
        augment=augment,
        crop_scale=tuple(data_cfg.get("crop_scale", (0.35, 1.0))),
        shard=shard,
        **common,
    )
    cacheable = None
    if augment == "none":
        recipe = f"{data_cfg['name']} train {data_dir}"
        cacheable = images.image_cacheable_examples(
            train_source, bundle.preprocessing, recipe=recipe, **common
        )
    eval_batch_size = int(data_cfg.get("eval_batch_size", config["batch_size"]))
    eval_examples = int(data_cfg.get("eval_examples", 0)) or None
    evals = {
        split: images.make_image_eval_batches(
            _FirstN(
                image_sources.load_image_source(data_cfg["name"], split, data_dir), eval_examples
            ),
            bundle.preprocessing,
            batch_size=eval_batch_size,
            shard=shard,
        )
        for split in data_cfg.get("eval_splits", ("validation", "test"))
    }
    return train, evals, cacheable, _train_size(data_cfg, len(train_source))


class _FirstN:
    """The first n examples of a random-access source (all when n is None): quick dev runs."""

    def __init__(self, source, n: int | None):
        self.source, self.n = source, len(source) if n is None else min(n, len(source))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.source[i]


def _text_data(config, bundle: ModelBundle, data_dir, shard: Shard):
    data_cfg = config["data"]
    common = dict(max_length=int(data_cfg["max_length"]), buckets=tuple(data_cfg["buckets"]))
    train_source = sources.load_text_source(data_cfg["name"], "train", data_dir)
    cacheable = text.cacheable_examples(
        train_source,
        bundle.tokenizer,
        batch_size=int(config["batch_size"]),
        seed=int(config["seed"]),
        num_examples=int(data_cfg.get("train_examples", 0)) or None,
        recipe=f"{data_cfg['name']} train {data_dir} tokenizer {bundle.checkpoint_dir}",
        **common,
    )
    # = text.make_train_batches: the global batch, or with several processes this one's rows
    train = cacheable.index_batches.map(cacheable.make_batch.for_shard(shard))
    eval_batch_size = int(data_cfg.get("eval_batch_size", config["batch_size"]))
    evals = {
        split: text.make_eval_batches(
            sources.load_text_source(data_cfg["name"], split, data_dir),
            bundle.tokenizer,
            batch_size=eval_batch_size,
            shard=shard,
            **common,
        )
        for split in data_cfg.get("eval_splits", ("validation", "test"))
    }
    return train, evals, cacheable, _train_size(data_cfg, len(train_source))
