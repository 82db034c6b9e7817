"""A run's settings, read once: typed, frozen specs built from an experiment config.

:func:`read_spec` is the one reader of an experiment's ``ConfigDict`` (or of a plain mapping, such
as a run folder's config.json). Every default lives in the dataclass fields below and every check
that needs only the config runs here, before a model or dataset is loaded: the required keys, the
numbers (:mod:`tlx.config_checks`, every bad value reported at once), the names chosen from a
fixed list, and the settings that must agree with each other. What needs the model or the data
(groups, plans, label counts) is checked by :mod:`tlx.experiment` as it assembles the run.

Library functions that take one section (``tlx.transfer.plans.build_plan``,
``tlx.transfer.optim.StageOptimizers``, ``tlx.zoo.registry.build_model``) accept its spec, or a
plain mapping that they turn into one through ``<Section>Spec.of`` (handy in notebooks and tests).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tlx.config_checks import check_numbers
from tlx.errors import ConfigError, FeatureCacheError

# The names a setting may take, defined once (the modules that act on them import these).
PARALLEL_MODES = ("jit", "pmap")
FEATURE_CACHE_MODES = ("off", "memory", "disk")
BATCHNORM_POLICIES = ("frozen", "affine", "train", "tent")
# config.model.batchnorm: BatchNorm in the groups that train (tlx.zoo.vision)
BATCHNORM_MODES = ("frozen", "fixed", "train")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
DECAYS = ("cosine", "linear", "constant", "one_cycle", "slanted_triangular")
# config.adapt.method (tlx.adaptation): "none" evaluates the source model on the target as it is.
ADAPT_METHODS = ("none", "adabn", "tent", "pseudo_label", "coral", "dann")
# train on labelled source + unlabelled target batches together (tlx.adaptation.mixed)
MIXED_ADAPT_METHODS = ("pseudo_label", "coral", "dann")
UNTRAINED_ADAPT_METHODS = ("none", "adabn")  # may run with total_steps = 0
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
EMPTY: Mapping = MappingProxyType({})
CHOICE_HINTS = {
    "config.model.compute_dtype": " bfloat16 is the mixed-precision choice (float32 "
    "parameters, bfloat16 compute).",
    "config.model.batchnorm": " 'frozen' normalises the training groups with their running "
    "statistics, 'fixed' also keeps their scale and bias (torchvision's FrozenBatchNorm2d), "
    "'train' uses batch statistics.",
    "config.model.frozen_batchnorm": " 'frozen' keeps frozen groups' BatchNorm fixed, 'affine' "
    "trains its scale and bias, 'train' updates its statistics, 'tent' does both.",
}


def frozen_mapping(value) -> Mapping:
    """A read-only copy of a (possibly nested) mapping; other values are returned as they are."""
    if value is None:
        return EMPTY
    if not hasattr(value, "keys"):
        return value
    return MappingProxyType({str(k): frozen_mapping(value[k]) for k in value})


class _Section:
    """Reading one config section into its dataclass: known keys only, defaults for the rest."""

    SECTION = ""  # its key in the config, for messages

    @classmethod
    def of(cls, section):
        """`section` as this spec: returned as it is when it is one already."""
        if isinstance(section, cls):
            return section
        if section is None or not hasattr(section, "keys"):
            raise ConfigError(
                f"config.{cls.SECTION} must be a section of fields, found {section!r}."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in section if k not in names)
        if unknown:
            raise ConfigError(
                f"config.{cls.SECTION} has unknown fields {unknown}; its fields are "
                f"{sorted(names)}. Check the spelling in the config file."
            )
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in section
        ]
        if required:
            raise ConfigError(
                f"config.{cls.SECTION} lacks {required}, which every {cls.SECTION} section sets."
            )
        return cls(**{k: cls._convert(k, section[k]) for k in section})

    @classmethod
    def _convert(cls, name: str, value):
        return value


@dataclasses.dataclass(frozen=True)
class ModelSpec(_Section):
    """``config.model``: which network, from which weights, computing in which dtype."""

    SECTION = "model"
    name: str  # tlx.zoo.registry.BUILDERS
    checkpoint: str = ""  # a catalog name, "hf:<repo id>" or a local folder
    checkpoint_path: str = ""  # a local copy of the catalog file, if elsewhere
    random_init: bool = False  # the checkpoint's architecture, random weights
    compute_dtype: str = "float32"  # activations and matmuls (parameters stay float32)
    # Images
    arch: str = ""  # from the checkpoint; set for from-scratch models
    kwargs: Mapping = dataclasses.field(
        default_factory=lambda: EMPTY
    )  # the architecture's constructor arguments (e.g. dropout)
    image_size: int = 0  # 0: the checkpoint's own crop size
    # Shorter side before the centre crop; 0: the recipe's ratio (torchvision's 256/224);
    # = image_size: the whole image, nothing cropped away (e.g. 28 for 28x28 Fashion-MNIST).
    resize_size: int = 0
    letterbox: bool = False  # detectors: darknet's letterbox instead of a plain resize
    batchnorm: str = "frozen"  # running statistics of the trained groups
    frozen_batchnorm: str = "frozen"  # BatchNorm in the groups a stage freezes
    frozen_batchnorm_lr_multiplier: float = 1.0  # frozen_batchnorm="affine": their rate factor
    # Text
    pooling: str = "pooler"  # how the encoder embeds a sentence: "pooler" | "mean" | "cls"
    classifier_dropout: float | None = None  # None: the checkpoint's hidden dropout
    dropout: float | None = None  # the encoder's dropout rates; None keeps the checkpoint's
    # BERT attention: "eager" (tlx's einsums, attention dropout as the checkpoint says), or
    # "fused" / "cudnn" / "xla" through jax.nn.dot_product_attention, which trains without
    # attention-probability dropout (hidden dropout stays): cuDNN's fused kernel on a GPU.
    attn_implementation: str = "eager"

    @classmethod
    def _convert(cls, name, value):
        if name == "kwargs":
            return frozen_mapping(value)
        if name == "compute_dtype":
            return value or "float32"
        if name in ("checkpoint", "checkpoint_path", "arch"):
            return value or ""
        return value


@dataclasses.dataclass(frozen=True)
class DataSpec(_Section):
    """``config.data``: the dataset, its splits and how batches are made from it."""

    SECTION = "data"
    name: str
    data_dir: str | None = None  # None: $TLX_DATA_DIR or ~/tensorflow_datasets
    train_examples: int = 0  # 0: the whole split; N: a fixed seeded subset of N
    eval_batch_size: int | None = None  # None: the training batch size
    eval_examples: int = 0  # 0: whole splits; N: the first N of each
    eval_split: str = "validation"  # the split evaluated during training
    eval_splits: tuple[str, ...] = ("validation", "test")  # evaluated at the end
    workers: int = 0  # data-loading processes
    # Text
    max_length: int | None = None  # tokens per example, with [CLS] and [SEP]
    buckets: tuple[int, ...] = ()  # padded lengths; each compiles once a stage
    # Images
    augment: str = "random_resized_crop"  # or "crop", "flip", "none"; detection: "flip" ...
    crop_scale: tuple[float, float] = (0.35, 1.0)
    # Detection
    max_boxes: int = 100  # box slots per image (padding); an image with more is an error

    @classmethod
    def _convert(cls, name, value):
        if name == "data_dir":
            return value or None
        if name in ("eval_splits", "buckets", "crop_scale") and not isinstance(value, str):
            return tuple(value)
        return value


@dataclasses.dataclass(frozen=True)
class PlanSpec(_Section):
    """``config.plan``: which groups train at which step, at which rate (tlx.transfer.plans)."""

    SECTION = "plan"
    name: str  # tlx.transfer.plans.BUILDERS
    k: int | None = None  # freeze_to: top k groups train
    every: int | None = None  # progressive: steps between unfreezes
    start: int = 1  # progressive: groups trainable at step 0
    head: int = 1  # feature_extraction: groups in the head
    stages: tuple = ()  # custom: ((start_step, ((group_regex, multiplier | None), ...)), ...)
    lr_multipliers: str = ""  # "regex=factor,..."
    layer_decay: float = 1.0  # lr x decay**depth from the head
    lr_slice: tuple = ()  # (low, high): fastai-style factors from the input group to the head

    @classmethod
    def _convert(cls, name, value):
        if name in ("lr_slice", "stages"):
            return tuple(value or ())
        if name == "lr_multipliers":
            return value or ""
        return value


@dataclasses.dataclass(frozen=True)
class OptimSpec(_Section):
    """``config.optim``: the optimizer (AdamW, or SGD with momentum as detection recipes use) and
    the learning-rate schedule (tlx.transfer.optim)."""

    SECTION = "optim"
    learning_rate: float
    optimizer: str = "adamw"  # OPTIMIZERS
    momentum: float = 0.9  # sgd: heavy-ball momentum, torch.optim.SGD's (dampening 0)
    warmup_steps: int = 0
    decay: str = "cosine"  # DECAYS
    final_fraction: float = 0.0  # cosine / linear: where the decay ends, as a share of the peak
    pct_start: float = 0.3  # one_cycle: the share of the run spent rising
    cut_frac: float = 0.1  # slanted_triangular: the share of the run spent rising
    ratio: float = 32  # slanted_triangular: peak / lowest rate
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float | None = None  # None or 0: gradients are not clipped
    # sgd with decay "one_cycle": momentum cycles opposite to the rate, max -> base -> max, as
    # torch's OneCycleLR does by default (cycle_momentum=True, 0.95 / 0.85)
    cycle_momentum: bool = False
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    decay_vectors: bool = False  # weight decay on biases and norm scales too, as torch's SGD does
    unfreeze_warmup_steps: int = 0  # each group's own warm-up after it starts training
    # {group or fnmatch pattern: {field: value}}: per-group schedule overrides (and `clock`)
    group_schedules: Mapping = dataclasses.field(default_factory=lambda: EMPTY)

    @classmethod
    def _convert(cls, name, value):
        if name == "group_schedules":
            return frozen_mapping(value)
        if name == "unfreeze_warmup_steps":
            return value or 0
        return value

    def with_fields(self, fields: Mapping) -> OptimSpec:
        """This section with a group schedule's fields in place of its own (`clock` is not one)."""
        return dataclasses.replace(self, **{k: v for k, v in fields.items() if k != "clock"})


@dataclasses.dataclass(frozen=True)
class ShardingSpec(_Section):
    """``config.sharding`` (jit only): parameters split over a 'model' mesh axis."""

    SECTION = "sharding"
    model_axis: int = 1
    rules: Any = ""  # "regex=spec; ..." or ((regex, spec), ...)

    @classmethod
    def _convert(cls, name, value):
        if name == "rules" and not isinstance(value, str):
            return tuple(tuple(pair) for pair in value or ())
        return value


@dataclasses.dataclass(frozen=True)
class SelectionSpec(_Section):
    """``config.selection``: which evaluation picks the checkpoint a run reports, and when a run
    that stopped improving ends (tlx.selection). With no metric, the last step is the selected
    one and the run trains to total_steps, as before selection existed."""

    SECTION = "selection"
    metric: str = ""  # a metric of the evaluation of data.eval_split, e.g. "accuracy"; "": off
    mode: str = ""  # "max" | "min"; "": "min" for a metric named *loss*, else "max"
    patience: int = 0  # evaluations without improvement before stopping; 0: never stop early
    min_delta: float = 0.0  # what counts as an improvement

    @property
    def enabled(self) -> bool:
        return bool(self.metric)

    @property
    def direction(self) -> str:
        return self.mode or ("min" if "loss" in self.metric else "max")


@dataclasses.dataclass(frozen=True)
class AdaptSpec(_Section):
    """``config.adapt``: transductive transfer to a target dataset whose labels are never read in
    training or selection (tlx.adaptation). Empty `method`: an ordinary run."""

    SECTION = "adapt"
    method: str = ""  # ADAPT_METHODS; "": no adaptation
    target: str = ""  # the target dataset (same label names and image channels as data.name)
    # the same classes under other names: "target:source,...", e.g. "negative:rotten,positive:fresh"
    label_map: str = ""
    target_split: str = "train"  # its unlabelled stream (labels dropped when read)
    # target splits evaluated at the end (with their labels, for the report only), as
    # "target_<split>"; the run's selection stays on data.eval_split of the source
    eval_splits: tuple[str, ...] = ("test",)
    # BatchNorm statistics re-estimated on the target before training ("adabn" and "tent" do;
    # None: the method's default)
    statistics: bool | None = None
    statistics_batch_size: int = 256  # images per batch of the statistics pass
    weight: float = 1.0  # the unlabelled loss's weight
    target_batch_size: int = 0  # target images per step; 0: config.batch_size
    ramp_steps: int = 0  # the unlabelled loss's weight rises linearly over these first steps
    # coral, dann: the sown intermediate whose (spatially pooled) features are aligned, e.g.
    # "dense_relu"; dann: its domain classifier's hidden width
    endpoint: str = ""
    domain_hidden: int = 256
    # pseudo_label (FixMatch): the confidence a weak view's prediction needs to become the label
    # of the strong view; the strong view's augmentation (the weak one is data.augment)
    threshold: float = 0.95
    strong_augment: str = "random_resized_crop"
    strong_crop_scale: tuple[float, float] = (0.35, 1.0)

    @classmethod
    def _convert(cls, name, value):
        if name in ("eval_splits", "strong_crop_scale") and not isinstance(value, str):
            return tuple(value)
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.method)

    @property
    def mixed(self) -> bool:
        """Whether each step reads labelled source and unlabelled target batches together."""
        return self.method in MIXED_ADAPT_METHODS

    @property
    def reestimates_statistics(self) -> bool:
        if self.statistics is None:
            return self.method in ("adabn", "tent")
        return bool(self.statistics)


PEFT_METHODS = ("none", "lora", "bitfit", "adapters", "prompt")


@dataclasses.dataclass(frozen=True)
class PeftSpec(_Section):
    """``config.peft``: parameter-efficient transfer (tlx.peft). Inside the groups the plan
    trains, only what the method adds or selects trains (LoRA's factors, BitFit's biases); the
    head (the last group) trains whole; everything else keeps its pretrained value."""

    SECTION = "peft"
    method: str = "none"  # PEFT_METHODS
    # lora: a regex searched in kernel paths, e.g. "attention/self/(query|value)"; adapters: in
    # dense layers' module paths ("": BERT's output projections, Houlsby's placement)
    targets: str = ""
    rank: int = 8  # lora: r
    alpha: float = 16.0  # lora: the update is scaled by alpha / r
    dropout: float = 0.0  # lora: dropout on the input of the LoRA branch
    init: str = "kaiming"  # lora: A's initialisation, "kaiming" (PEFT's default) or "gaussian"
    bottleneck: int = 64  # adapters: the hidden width m of each adapter
    prompt_tokens: int = 20  # prompt: learned vectors the encoder attends to

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


# Top-level fields that label a run without changing it (e.g. a sweep's strategy name).
_SECTIONS = {
    "model": ModelSpec,
    "data": DataSpec,
    "plan": PlanSpec,
    "optim": OptimSpec,
    "sharding": ShardingSpec,
    "selection": SelectionSpec,
    "adapt": AdaptSpec,
    "peft": PeftSpec,
}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything a run is: what tlx.experiment assembles and tlx.trainer carries out."""

    seed: int
    batch_size: int
    total_steps: int
    eval_every: int
    checkpoint_every: int
    model: ModelSpec
    data: DataSpec
    plan: PlanSpec
    optim: OptimSpec
    log_every: int = 50
    keep_checkpoints: int = 2
    # another run's workdir to start from (not a resume); "{seed}", "{data.name}", ...: that field
    # of this config, so one sweep cell starts from the source run of its own seed and dataset
    init_from: str = ""
    feature_cache: str = "off"  # FEATURE_CACHE_MODES
    steps_per_call: int = 1  # train steps per compiled call (a lax.scan)
    grad_accum_steps: int = 1  # micro-batches per step
    parallel: str = "jit"  # PARALLEL_MODES
    sharding: ShardingSpec = dataclasses.field(default_factory=ShardingSpec)
    selection: SelectionSpec = dataclasses.field(default_factory=SelectionSpec)
    adapt: AdaptSpec = dataclasses.field(default_factory=AdaptSpec)
    peft: PeftSpec = dataclasses.field(default_factory=PeftSpec)
    xla_flags: str = ""  # set by tlx.train before JAX starts
    task: str = "classification"  # tlx.tasks.TASKS
    # Fields the run does not read (e.g. a sweep's `strategy` label, `needs_download`).
    labels: Mapping = dataclasses.field(default_factory=lambda: EMPTY)
    # The config as plain JSON values: what config.json records and a resume is compared with.
    config: Mapping = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def eval_batch_size(self) -> int:
        return self.data.eval_batch_size or self.batch_size


def as_plain(config: Mapping) -> dict:
    """Plain JSON values (tuples as lists) of a ConfigDict or mapping, as config.json holds them."""
    if hasattr(config, "to_json"):
        return json.loads(config.to_json())
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(config, default=_jsonable))


def dotted_leaves(tree: Mapping, prefix: str = "") -> dict:
    """{'optim.learning_rate': 1e-4, ...}: a config's leaves by dotted key (an empty section is
    a leaf), as the command line and the resume rule name them."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(dotted_leaves(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def with_defaults(config: Mapping) -> dict:
    """The plain config with every field it leaves out set to its default: two configs that
    describe the same run compare equal, whether or not they spell out a default (a config.json
    written before a field existed, e.g. config.selection, against today's config)."""
    plain = as_plain(config)
    for field in dataclasses.fields(RunSpec):
        if field.name in ("labels", "config"):
            continue
        if field.name in _SECTIONS:
            section = plain.setdefault(field.name, {})
            if isinstance(section, dict):
                for inner in dataclasses.fields(_SECTIONS[field.name]):
                    default = _default(inner)
                    if inner.name not in section and default is not dataclasses.MISSING:
                        section[inner.name] = as_plain(default)
        elif field.name not in plain and _default(field) is not dataclasses.MISSING:
            plain[field.name] = as_plain(_default(field))
    return plain


def _default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _jsonable(value):
    if isinstance(value, MappingProxyType):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not a config value")


def fill_fields(text: str, config: Mapping, key: str) -> str:
    """`text` with each "{dotted.key}" replaced by that field of `config` (e.g. "{seed}")."""

    def value(match):
        name = match.group(1)
        if name not in leaves:
            raise ConfigError(
                f"config.{key}={text!r} names {{{name}}}, which is not a field of the config; "
                "use a dotted key such as {seed} or {data.name}."
            )
        return str(leaves[name])

    if "{" not in text:
        return text
    leaves = dotted_leaves(as_plain(config))
    return re.sub(r"\{([A-Za-z_][\w.]*)\}", value, text)


def read_spec(config: Mapping) -> RunSpec:
    """The run `config` describes, with every default filled in and every check that needs only
    the config passed; raises ConfigError (all bad numbers in one message) otherwise."""
    if isinstance(config, RunSpec):
        return config
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise ConfigError(
            f"Config lacks required keys {missing}; every experiment sets {REQUIRED_KEYS}."
        )
    check_numbers(config)  # every number finite and in range, all problems in one message
    top_fields = {f.name for f in dataclasses.fields(RunSpec)} - {"labels", "config"}
    values, labels = {}, {}
    for key in config:
        if key in _SECTIONS:
            values[key] = _SECTIONS[key].of(config[key])
        elif key in top_fields:
            values[key] = config[key]
        else:
            labels[key] = config[key]
    for key in ("seed", "batch_size", "total_steps", "eval_every", "checkpoint_every"):
        values[key] = int(values[key])
    values["init_from"] = fill_fields(values.get("init_from") or "", config, "init_from")
    values["xla_flags"] = values.get("xla_flags") or ""
    spec = RunSpec(**values, labels=frozen_mapping(labels), config=as_plain(config))
    _check_choices(spec)
    return spec


def _check_choices(spec: RunSpec) -> None:
    """Names picked from a fixed list, and settings that must agree with each other."""
    choices = [
        ("config.parallel", spec.parallel, PARALLEL_MODES),
        ("config.model.compute_dtype", spec.model.compute_dtype, COMPUTE_DTYPES),
        ("config.model.batchnorm", spec.model.batchnorm, BATCHNORM_MODES),
        ("config.model.frozen_batchnorm", spec.model.frozen_batchnorm, BATCHNORM_POLICIES),
    ]
    for key, value, allowed in choices:
        if value not in allowed:
            raise ConfigError(
                f"{key}={value!r} is not one of {allowed}.{CHOICE_HINTS.get(key, '')}"
            )
    if spec.feature_cache not in FEATURE_CACHE_MODES:
        raise FeatureCacheError(
            f"config.feature_cache must be one of {FEATURE_CACHE_MODES}, got {spec.feature_cache!r}."
        )
    if spec.model.batchnorm == "fixed" and spec.model.frozen_batchnorm in ("affine", "tent"):
        raise ConfigError(
            "config.model.batchnorm='fixed' keeps every BatchNorm scale and bias fixed, but "
            f"config.model.frozen_batchnorm={spec.model.frozen_batchnorm!r} trains them in the "
            "frozen groups: set frozen_batchnorm='frozen', or batchnorm='frozen'."
        )
    optim = spec.optim
    if optim.cycle_momentum and (optim.optimizer != "sgd" or optim.decay != "one_cycle"):
        raise ConfigError(
            "config.optim.cycle_momentum cycles SGD's momentum opposite to a one-cycle rate; got "
            f"optim.optimizer={optim.optimizer!r}, optim.decay={optim.decay!r}: set "
            "optimizer='sgd' and decay='one_cycle', or cycle_momentum=False."
        )
    if spec.batch_size % spec.grad_accum_steps:
        raise ConfigError(
            f"config.grad_accum_steps={spec.grad_accum_steps} must divide config.batch_size="
            f"{spec.batch_size} (and each device's share of it)."
        )
    selection = spec.selection
    if selection.mode not in ("", "max", "min"):
        raise ConfigError(
            f"config.selection.mode={selection.mode!r} is not one of ('max', 'min'); leave it "
            "empty to minimise a metric named *loss* and maximise any other."
        )
    for key in ("patience", "min_delta"):
        value = getattr(selection, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ConfigError(f"config.selection.{key}={value!r} must be a number >= 0.")
    if selection.patience and not selection.enabled:
        raise ConfigError(
            f"config.selection.patience={selection.patience} stops a run that stopped improving, "
            "but config.selection.metric is empty: name the metric to watch, e.g. 'accuracy'."
        )
    _check_adapt(spec)
    if spec.data.eval_split not in spec.data.eval_splits:
        raise ConfigError(
            f"config.data.eval_split={spec.data.eval_split!r} (evaluated during training) is not "
            f"among config.data.eval_splits={list(spec.data.eval_splits)}, the splits the run "
            "reads; add it there."
        )
    if spec.sharding.model_axis != 1 and spec.parallel == "pmap":
        raise ConfigError(
            "sharding.model_axis > 1 needs config.parallel='jit' (pmap replicates every "
            "parameter on every device)."
        )


def _check_adapt(spec: RunSpec) -> None:
    adapt = spec.adapt
    if adapt.method and adapt.method not in ADAPT_METHODS:
        raise ConfigError(
            f"config.adapt.method={adapt.method!r} is not one of {ADAPT_METHODS}: 'none' scores "
            "the source model on the target, 'adabn' re-estimates BatchNorm statistics there, "
            "'tent' also minimises the prediction entropy on target batches, 'pseudo_label' "
            "trains on confident predictions (FixMatch), 'coral' aligns feature covariances, "
            "'dann' trains features against a domain classifier."
        )
    if spec.total_steps == 0 and adapt.method not in UNTRAINED_ADAPT_METHODS:
        raise ConfigError(
            "config.total_steps=0 trains nothing; it suits only an adaptation that changes no "
            f"parameter (config.adapt.method one of {UNTRAINED_ADAPT_METHODS}), and this run has "
            f"adapt.method={adapt.method!r}. Give the run some steps."
        )
    for key, least in (
        ("statistics_batch_size", 1),
        ("target_batch_size", 0),
        ("ramp_steps", 0),
        ("domain_hidden", 1),
    ):
        value = getattr(adapt, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(
                f"config.adapt.{key}={value!r} must be a whole number >= {least} (images per "
                "batch; target_batch_size 0 takes config.batch_size)."
            )
    weight = adapt.weight
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
        raise ConfigError(
            f"config.adapt.weight={weight!r} must be a number >= 0 (the unlabelled loss's "
            "weight, e.g. 1.0)."
        )
    if not (isinstance(adapt.threshold, int | float) and 0 <= adapt.threshold <= 1):
        raise ConfigError(
            f"config.adapt.threshold={adapt.threshold!r} must be a probability in [0, 1] (the "
            "confidence a pseudo-label needs, e.g. 0.95)."
        )
    if not adapt.enabled:
        return
    if adapt.method in ("coral", "dann") and not adapt.endpoint:
        raise ConfigError(
            f"config.adapt.method={adapt.method!r} aligns the features of a named endpoint; set "
            "config.adapt.endpoint (e.g. 'dense_relu' for the small CNN, 'last_conv' for "
            "MobileNetV2)."
        )
    if not adapt.target:
        raise ConfigError(
            f"config.adapt.method={adapt.method!r} needs config.adapt.target, the dataset to "
            "adapt to (its labels are read only to report the target evaluation)."
        )
    if spec.task != "classification":
        raise ConfigError(
            f"config.adapt adapts classifiers; this run's task is {spec.task!r}. Leave "
            "config.adapt.method empty."
        )
