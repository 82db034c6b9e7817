"""Assemble a run from its spec: model + pretrained weights + plan + task + data.

The config is read once, by :func:`tlx.spec.read_spec`; this module turns the resulting
:class:`~tlx.spec.RunSpec` into an :class:`Experiment` that the trainer carries out. Everything
here is cheap and fails early: a wrong name, a missing checkpoint or dataset, or a plan that does
not fit the model raises before any training compute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import grain
import jax

from tlx.adaptation import dann
from tlx.adaptation.data import TargetData, build_target_data
from tlx.adaptation.mixed import MixedBatches, input_keys, mixed_forward
from tlx.config_checks import check_label_count
from tlx.data import sources, text
from tlx.data.images import AUGMENTATIONS
from tlx.data.sampling import CacheableExamples, Shard
from tlx.errors import ConfigError, FeatureCacheError
from tlx.peft import apply_peft
from tlx.spec import DataSpec, RunSpec, read_spec
from tlx.tasks import Classification, Task, get_task
from tlx.tasks.adaptation import Adaptation
from tlx.transfer.groups import assign_groups
from tlx.transfer.optim import check_schedules
from tlx.transfer.plans import Plan, build_plan
from tlx.tree import flatten
from tlx.zoo.registry import ModelBundle, build_model


@dataclasses.dataclass
class Experiment:
    spec: RunSpec  # every setting, read and checked (tlx.spec)
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
    # config.adapt: the target's unlabelled stream and statistics batches (tlx.adaptation.data);
    # its evaluation splits are in eval_batches as "target_<split>".
    target: TargetData | None = None

    @property
    def group_names(self) -> list[str]:
        return self.model.group_names


def build_experiment(config: Mapping | RunSpec, *, with_data: bool = True) -> Experiment:
    """The run `config` describes (a ConfigDict, a mapping or a RunSpec), assembled and checked."""
    spec = read_spec(config)
    task = get_task(spec.task)
    data = spec.data
    is_image = _is_image_dataset(data.name)
    is_detection = spec.task == "detection"
    if is_detection:
        from tlx.detection import sources as detection_sources

        names = detection_sources.detection_label_names(data.name, data.data_dir)
    elif is_image:
        from tlx.data import image_sources

        names = image_sources.image_label_names(data.name, data.data_dir)
    else:
        names = sources.label_names(data.name, data.data_dir)
    check_label_count(names, data.name, spec.task)
    bundle = build_model(spec.model, num_classes=len(names))
    if hasattr(task, "for_model"):  # a task that depends on the model (detection: its heads)
        task = task.for_model(bundle, names)

    # Groups and plan are checked against the real parameter tree before anything is trained.
    shapes = jax.eval_shape(bundle.init, jax.random.key(0))
    adapt = spec.adapt
    if adapt.enabled:
        _check_adaptation(spec, is_image, shapes, bundle)
        task = Adaptation(
            adapt.weight, adapt.method, adapt.threshold, adapt.ramp_steps, num_classes=len(names)
        )
        if adapt.method == "dann":  # a domain classifier group of its own: new shapes
            bundle = dann.with_domain_classifier(
                bundle, adapt.endpoint, adapt.domain_hidden, spec.total_steps,
                dann.feature_dim(bundle, adapt.endpoint),
            )  # fmt: skip
            shapes = jax.eval_shape(bundle.init, jax.random.key(0))
        elif adapt.mixed:  # one forward over source and target images: tlx.adaptation.mixed
            bundle = _mixed_bundle(bundle, adapt.endpoint if adapt.method == "coral" else "")
    if spec.selection.enabled and spec.selection.metric not in task.metric_names:
        raise ConfigError(
            f"config.selection.metric={spec.selection.metric!r} is not a metric of the "
            f"{task.name} task{' (adapted)' if adapt.enabled else ''}; choose one of "
            f"{list(task.metric_names)}."
        )
    if spec.peft.enabled:  # LoRA's factors join the model before its groups are checked
        param_shapes = {p: s.shape for p, s in flatten(shapes["params"]).items()}
        bundle = apply_peft(bundle, spec.peft, param_shapes)
        shapes = jax.eval_shape(bundle.init, jax.random.key(0))
    assign_groups(list(flatten(shapes["params"])), bundle.groups)
    frozen_train = spec.model.frozen_batchnorm in ("affine", "tent")
    plan = build_plan(bundle.group_names, spec.plan, spec.total_steps, frozen_train=frozen_train)
    # the model's groups, with affine BatchNorm's and a parameter-efficient method's labels
    labels = [f"{g}{suffix}" for g in bundle.group_names for suffix in ("", "/bn", "/base")]
    check_schedules(spec.optim, labels, spec.total_steps)

    _check_feature_cache(spec, is_image or is_detection)
    shard = process_shard(spec)

    train_batches, eval_batches, cacheable, train_size = None, {}, None, None
    target = None
    if with_data:
        make_data = _detection_data if is_detection else _image_data if is_image else _text_data
        train_batches, eval_batches, cacheable, train_size = make_data(spec, bundle, shard)
    if with_data and spec.adapt.enabled:
        target = build_target_data(spec, bundle, names, shard)
        eval_batches = {**eval_batches, **target.eval_batches}
        if spec.adapt.method == "tent":  # trains on unlabelled target batches alone
            train_batches, cacheable = target.train_batches, None
        elif spec.adapt.mixed:  # each step: the source batch and the target batch of that step
            mixed = MixedBatches(target.train_batches, target.strong_batches, input_keys(bundle))
            train_batches, cacheable = train_batches.map_with_index(mixed), None
    return Experiment(
        spec, bundle, plan, names, train_batches, eval_batches, cacheable, train_size, task, target
    )


def _mixed_bundle(bundle: ModelBundle, endpoint: str) -> ModelBundle:
    """The bundle whose train forward runs over mixed source + target batches (with the
    endpoint's features when one is named); evaluation keeps the plain forward."""
    keys = input_keys(bundle)

    def forward_for_stage(trainable):
        if endpoint:
            return mixed_forward(bundle.forward_for_stage(trainable, endpoint), True, keys)
        return mixed_forward(bundle.forward_for_stage(trainable), False, keys)

    return dataclasses.replace(bundle, forward_for_stage=forward_for_stage)


def _check_adaptation(spec: RunSpec, is_image: bool, shapes, bundle: ModelBundle) -> None:
    """What an adaptation needs of the run, before any data is read."""
    adapt = spec.adapt
    if spec.feature_cache != "off":
        raise FeatureCacheError(
            f"config.feature_cache={spec.feature_cache!r}: an adaptation changes what the frozen "
            "groups compute (their BatchNorm statistics); set config.feature_cache='off'."
        )
    uses_batchnorm = adapt.reestimates_statistics or spec.model.frozen_batchnorm == "tent"
    if uses_batchnorm and not flatten(shapes.get("batch_stats", {})):
        raise ConfigError(
            f"config.adapt.method={adapt.method!r} acts on BatchNorm statistics (statistics="
            f"{adapt.reestimates_statistics}, model.frozen_batchnorm="
            f"{spec.model.frozen_batchnorm!r}), and model {spec.model.arch or spec.model.checkpoint!r} "
            "has no BatchNorm layer. Use a model with BatchNorm (the small CNN with "
            "model.kwargs.batch_norm=True, MobileNetV2, ResNet-50) or adapt.statistics=False."
        )
    if adapt.mixed and bundle.forward_for_stage is None:
        raise ConfigError(
            f"config.adapt.method={adapt.method!r} needs a classifier built by "
            "model.name='image_classifier' or 'bert_classifier'."
        )
    pseudo_labels_images = adapt.method == "pseudo_label" and is_image
    if pseudo_labels_images and adapt.strong_augment not in AUGMENTATIONS:
        raise ConfigError(
            f"config.adapt.strong_augment={adapt.strong_augment!r} is not one of {AUGMENTATIONS}."
        )
    if adapt.method in ("coral", "dann"):
        _check_endpoint(spec, bundle)


def _check_endpoint(spec: RunSpec, bundle: ModelBundle) -> None:
    """The endpoint names activations the model sows (traced, nothing computed)."""
    try:
        dann.feature_dim(bundle, spec.adapt.endpoint)
    except ValueError as e:
        raise ConfigError(f"config.adapt.endpoint={spec.adapt.endpoint!r}: {e}") from e


def _train_size(data: DataSpec, split_size: int) -> int:
    wanted = int(data.train_examples)
    return min(wanted, split_size) if wanted else split_size


def process_shard(spec: RunSpec | Mapping) -> Shard:
    """This process's rows of every batch (all of them for one process), with the checks a
    multi-process run needs before anything is built."""
    spec = read_spec(spec)
    count = jax.process_count()
    if count == 1:
        return Shard()
    from tlx import parallel

    devices = count * jax.local_device_count()
    sizes = {
        "config.batch_size": spec.batch_size,
        "config.data.eval_batch_size": spec.eval_batch_size,
    }
    for what, size in sizes.items():
        if size % devices:
            raise ValueError(
                f"{what}={size} must be divisible by the processes x devices per process "
                f"({count} x {jax.local_device_count()} = {devices}) so that every device of "
                f"every process gets the same share; use a multiple of {devices}, e.g. "
                f"{devices * max(1, size // devices)}."
            )
    if spec.parallel != "jit":
        raise ValueError(
            f"config.parallel={spec.parallel!r} runs in one process, and this run has "
            f"{count}; use config.parallel='jit' across processes."
        )
    if spec.sharding.model_axis != 1 or spec.sharding.rules:
        raise ValueError(
            "config.sharding (split parameters over a 'model' axis) is not supported with "
            f"several processes yet (this run has {count}); leave sharding.model_axis=1 and "
            "sharding.rules empty."
        )
    if spec.feature_cache != "off":
        raise ValueError(
            f"config.feature_cache={spec.feature_cache!r} is not supported with several "
            f"processes (this run has {count}); set config.feature_cache='off'."
        )
    index, count = parallel.process_rows(parallel.make_mesh())
    return Shard(index, count)


def _check_feature_cache(spec: RunSpec, is_image: bool) -> None:
    """A feature cache needs inputs and frozen groups that compute the same thing every epoch."""
    if spec.feature_cache == "off":
        return
    if spec.task == "detection":
        raise FeatureCacheError(
            f"config.feature_cache={spec.feature_cache!r}: detection runs do not cache features "
            "yet; set config.feature_cache='off'."
        )
    augment = spec.data.augment
    if is_image and augment != "none":
        raise FeatureCacheError(
            f"config.feature_cache={spec.feature_cache!r} needs the same input for an "
            f"example every epoch, but data.augment={augment!r} draws a new crop each time. "
            "Set data.augment='none' (or feature_cache='off')."
        )
    if spec.model.frozen_batchnorm != "frozen":
        raise FeatureCacheError(
            "config.feature_cache needs frozen groups that compute the same features every "
            f"epoch, but model.frozen_batchnorm={spec.model.frozen_batchnorm!r} changes "
            "their BatchNorm layers during training. Set model.frozen_batchnorm='frozen' or "
            "feature_cache='off'."
        )


def _is_image_dataset(name: str) -> bool:
    from tlx.data import image_sources

    return image_sources.is_image_dataset(name)


def _image_data(spec: RunSpec, bundle: ModelBundle, shard: Shard):
    from tlx.data import image_sources, images

    data = spec.data
    if bundle.preprocessing is None:
        raise ValueError(
            f"Dataset {data.name!r} holds images but model {spec.model.name!r} "
            "has no image preprocessing; use model.name='image_classifier'."
        )
    train_source = image_sources.load_image_source(data.name, "train", data.data_dir)
    common = dict(
        batch_size=spec.batch_size, seed=spec.seed, num_examples=data.train_examples or None
    )
    train = images.make_image_train_batches(
        train_source,
        bundle.preprocessing,
        augment=data.augment,
        crop_scale=tuple(data.crop_scale),
        shard=shard,
        **common,
    )
    cacheable = None
    if data.augment == "none":
        recipe = f"{data.name} train {data.data_dir}"
        cacheable = images.image_cacheable_examples(
            train_source, bundle.preprocessing, recipe=recipe, **common
        )
    evals = {
        split: images.make_image_eval_batches(
            _FirstN(
                image_sources.load_image_source(data.name, split, data.data_dir),
                data.eval_examples or None,
            ),
            bundle.preprocessing,
            batch_size=spec.eval_batch_size,
            shard=shard,
        )
        for split in data.eval_splits
    }
    return train, evals, cacheable, _train_size(data, len(train_source))


def _detection_data(spec: RunSpec, bundle: ModelBundle, shard: Shard):
    from tlx.detection import batches
    from tlx.detection import sources as detection_sources

    data = spec.data
    if data.augment not in batches.AUGMENTATIONS:
        raise ConfigError(
            f"config.data.augment={data.augment!r}: detection augmentations are "
            f"{batches.AUGMENTATIONS} (they move the boxes with the pixels)."
        )

    def source(split):
        return detection_sources.load_detection_source(data.name, split, data.data_dir)

    train_source = source("train")
    if data.train_examples:
        train_source = detection_sources.SeededSubset(train_source, data.train_examples, spec.seed)
    common = dict(max_boxes=int(data.max_boxes), shard=shard)
    train = batches.make_detection_train_batches(
        train_source,
        bundle.preprocessing,
        batch_size=spec.batch_size,
        seed=spec.seed,
        augment=data.augment,
        **common,
    )
    evals = {
        split: batches.make_detection_eval_batches(
            _FirstN(source(split), data.eval_examples or None),
            bundle.preprocessing,
            batch_size=spec.eval_batch_size,
            **common,
        )
        for split in data.eval_splits
    }
    return train, evals, None, len(train_source)


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


def _text_data(spec: RunSpec, bundle: ModelBundle, shard: Shard):
    data = spec.data
    common = dict(max_length=int(data.max_length), buckets=tuple(data.buckets))
    train_source = sources.load_text_source(data.name, "train", data.data_dir)
    cacheable = text.cacheable_examples(
        train_source,
        bundle.tokenizer,
        batch_size=spec.batch_size,
        seed=spec.seed,
        num_examples=data.train_examples or None,
        recipe=f"{data.name} train {data.data_dir} tokenizer {bundle.checkpoint_dir}",
        **common,
    )
    # = text.make_train_batches: the global batch, or with several processes this one's rows
    train = cacheable.index_batches.map(cacheable.make_batch.for_shard(shard))
    evals = {
        split: text.make_eval_batches(
            sources.load_text_source(data.name, split, data.data_dir),
            bundle.tokenizer,
            batch_size=spec.eval_batch_size,
            shard=shard,
            **common,
        )
        for split in data.eval_splits
    }
    return train, evals, cacheable, _train_size(data, len(train_source))
