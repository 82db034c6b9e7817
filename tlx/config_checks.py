"""Every number of an experiment config, checked before anything is built.

:func:`check_numbers` walks the numeric settings of a config (steps, sizes, the learning-rate
schedule and its per-group overrides, the optimizer, the plan's multipliers, dropout rates, data
sizes) and raises one :class:`~tlx.errors.ConfigError` that lists *every* value that cannot work:
its full key, the value found, the allowed range and what to do. `tlx.spec.read_spec`
calls it, so a run with ``optim.learning_rate=-0.01`` (which trained to chance accuracy with exit
code 0) or ``nan`` (which stopped after a few steps) is refused before a model or dataset is
loaded. A key a config does not have is not checked; which keys a config must have is
`tlx.spec`'s business.

The ranges are defined once, in `tlx.ranges` (:class:`~tlx.ranges.Number`); the library
functions that take the same values as arguments (`tlx.transfer.plans`, `tlx.zoo.text`) check
them with the same definitions.

Numbers must be ints or floats (numpy's too): a string such as ``'1e-4'`` is refused, and so is a
boolean (``True`` is not 1 step). Whole-number settings (steps, sizes, counts) accept floats only
when they are whole (``360.0``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from tlx.errors import ConfigError, PlanError
from tlx.ranges import (
    CLIP_NORM,
    COUNT,
    CROP_SHARE,
    DROPOUT,
    FRACTION,
    LAYER_DECAY,
    LEARNING_RATE,
    MAX_LENGTH,
    MOMENT_DECAY,
    NON_NEGATIVE,
    OPTIONAL_DROPOUT,
    POSITIVE,
    POSITIVE_INT,
    RATIO,
    RISE_FRACTION,
    SEED,
    Number,
    pair_problem,
)


@dataclasses.dataclass(frozen=True)
class Setting:
    number: Number
    hint: str  # what to do, in a sentence


_STEPS_HINT = "A number of steps, at least 1."
TOP_LEVEL = {
    "seed": Setting(SEED, "Use a whole number from 0 to 4294967295, e.g. 0."),
    "batch_size": Setting(POSITIVE_INT, "Training examples per step, e.g. 32."),
    "total_steps": Setting(
        COUNT,
        "The run's training steps, e.g. 360 (0 only for an adaptation that trains nothing: "
        "adapt.method 'none' or 'adabn').",
    ),
    "eval_every": Setting(POSITIVE_INT, _STEPS_HINT),
    "checkpoint_every": Setting(POSITIVE_INT, _STEPS_HINT),
    "log_every": Setting(POSITIVE_INT, _STEPS_HINT),
    "steps_per_call": Setting(POSITIVE_INT, "1 runs one step per compiled call."),
    "grad_accum_steps": Setting(POSITIVE_INT, "1 turns gradient accumulation off."),
    "keep_checkpoints": Setting(POSITIVE_INT, "How many checkpoints to keep, at least 1."),
}
SHARDING = {
    "model_axis": Setting(POSITIVE_INT, "1 keeps every parameter whole on every device."),
}
# The optim fields a group schedule may override are checked there with the same ranges.
OPTIM = {
    "learning_rate": Setting(
        LEARNING_RATE,
        "Give the base rate (the plan's multipliers scale it per group), e.g. 1e-4 to "
        "fine-tune a pretrained body or 1e-2 for a head alone; to keep groups fixed use the "
        "plan, not a rate of 0.",
    ),
    "warmup_steps": Setting(COUNT, "0 turns the warm-up off."),
    "final_fraction": Setting(
        FRACTION, "The fraction of the peak the decay ends at: 0 ends at zero, 1 stays at the peak."
    ),
    "pct_start": Setting(
        RISE_FRACTION, "The share of the run one_cycle spends rising to the peak, e.g. 0.3."
    ),
    "cut_frac": Setting(
        RISE_FRACTION,
        "The share of the run slanted_triangular spends rising to the peak, e.g. 0.1.",
    ),
    "ratio": Setting(
        RATIO, "How many times lower than the peak slanted_triangular starts and ends, e.g. 32."
    ),
    "weight_decay": Setting(
        NON_NEGATIVE, "0 turns weight decay off; typical values are 1e-4 to 0.1."
    ),
    "momentum": Setting(MOMENT_DECAY, "SGD's momentum, e.g. 0.9 (0 turns it off)."),
    "base_momentum": Setting(MOMENT_DECAY, "cycle_momentum's lowest momentum, e.g. 0.85."),
    "max_momentum": Setting(MOMENT_DECAY, "cycle_momentum's highest momentum, e.g. 0.95."),
    "b1": Setting(MOMENT_DECAY, "Adam's first-moment decay, e.g. 0.9."),
    "b2": Setting(MOMENT_DECAY, "Adam's second-moment decay, e.g. 0.999."),
    "eps": Setting(POSITIVE, "Adam's denominator guard, e.g. 1e-8."),
    "clip_norm": Setting(CLIP_NORM, "The global gradient norm to clip to, e.g. 1.0."),
    "unfreeze_warmup_steps": Setting(
        Number(0, whole=True, off=(None,), off_note="None: off"),
        "0 turns each group's own warm-up off.",
    ),
}
STEP_FIELDS = ("warmup_steps", "unfreeze_warmup_steps")  # must be < total_steps
PLAN = {
    "k": Setting(POSITIVE_INT, "The number of top groups that train, at least 1."),
    "every": Setting(POSITIVE_INT, "Steps between two unfreezes, at least 1."),
    "start": Setting(POSITIVE_INT, "Groups that train from step 0, at least 1."),
    "head": Setting(POSITIVE_INT, "Groups in the head, at least 1."),
    "layer_decay": Setting(
        LAYER_DECAY,
        "Each group learns at this factor times the group above it: 1 turns it off, "
        "ULMFiT uses 1/2.6.",
    ),
}
LR_SLICE_HINT = (
    "Give (low, high), the factors of the input group and of the head with 0 < low <= high, "
    "e.g. (0.01, 1.0), or () for none."
)
LR_MULTIPLIERS_HINT = (
    "Write 'group_regex=factor,...' with finite factors > 0, e.g. 'head=10'; to keep a group "
    "fixed use the plan, not a factor of 0."
)
_DROPOUT_HINT = "The share of units dropped: 0 turns dropout off; 1 would drop everything."
MODEL = {
    "dropout": Setting(OPTIONAL_DROPOUT, _DROPOUT_HINT),
    "classifier_dropout": Setting(OPTIONAL_DROPOUT, _DROPOUT_HINT),
    "image_size": Setting(COUNT, "Pixels of the square crop; 0 uses the checkpoint's own."),
    "resize_size": Setting(
        COUNT, "Pixels of the shorter side before the centre crop; 0 keeps the recipe's ratio."
    ),
    "frozen_batchnorm_lr_multiplier": Setting(
        POSITIVE,
        "The rate factor of frozen groups' BatchNorm scale and bias (frozen_batchnorm='affine'), "
        "e.g. 1.0.",
    ),
}
DATA = {
    "max_length": Setting(MAX_LENGTH, "Tokens per example with [CLS] and [SEP], e.g. 64."),
    "train_examples": Setting(COUNT, "0 trains on the whole split; N on a fixed subset of N."),
    "eval_batch_size": Setting(POSITIVE_INT, "Examples per evaluation batch, e.g. 128."),
    "eval_examples": Setting(COUNT, "0 evaluates whole splits; N the first N of each."),
    "workers": Setting(COUNT, "Data-loading processes; 0 loads in the training process."),
}
BUCKETS_HINT = (
    "List padded lengths in increasing order, each at most data.max_length (which is always "
    "one), e.g. (48, 64)."
)
CROP_SCALE_HINT = (
    "Give (min, max), the shares of the image's area a random crop keeps, with "
    "0 < min <= max <= 1, e.g. (0.35, 1.0)."
)


# --- the walk ------------------------------------------------------------------------------------


class _Problems:
    """Collects one line per bad value."""

    def __init__(self):
        self.lines: list[str] = []

    def add(self, key: str, value, must: str, hint: str) -> None:
        self.lines.append(f"{key}={value!r} must be {must} {hint}")

    def check(self, key: str, value, setting: Setting) -> bool:
        problem = setting.number.problem(value)
        if problem is None:
            return True
        self.add(key, value, f"{setting.number.describe()}{problem}.", setting.hint)
        return False

    def section(self, prefix: str, section, settings: Mapping[str, Setting]) -> dict:
        """Checks the keys of `settings` that `section` has; returns those that passed."""
        good = {}
        for name, setting in settings.items():
            if _has(section, name) and self.check(f"{prefix}.{name}", section[name], setting):
                good[name] = section[name]
        return good


def _has(section, key: str) -> bool:
    return section is not None and hasattr(section, "keys") and key in section


def _sub(section, key: str):
    value = section[key] if _has(section, key) else None
    return value if hasattr(value, "keys") else None


def number_problems(config: Mapping) -> list[str]:
    """One line per numeric setting of `config` that cannot work (empty when all can)."""
    out = _Problems()
    top = out.section("config", config, TOP_LEVEL)
    total_steps = top.get("total_steps")
    out.section("config.sharding", _sub(config, "sharding"), SHARDING)

    optim = _sub(config, "optim")
    good = out.section("config.optim", optim, OPTIM)
    _check_steps_within_run(out, "config.optim", good, total_steps)
    schedules = _sub(optim, "group_schedules")
    for group in schedules.keys() if schedules is not None else ():
        fields = schedules[group]
        if not hasattr(fields, "keys"):
            continue  # tlx.transfer.optim says what a group schedule looks like
        prefix = f"config.optim.group_schedules{_subkey(str(group))}"
        # Only the fields a group schedule may override (the unknown ones are refused there).
        settings = {k: OPTIM[k] for k in SCHEDULE_FIELDS if k in OPTIM}
        good = out.section(prefix, fields, settings)
        _check_steps_within_run(out, prefix, good, total_steps)

    plan = _sub(config, "plan")
    out.section("config.plan", plan, PLAN)
    if _has(plan, "lr_slice"):
        _check_pair(out, "config.plan.lr_slice", plan["lr_slice"], POSITIVE, LR_SLICE_HINT, True)
    if _has(plan, "lr_multipliers"):
        _check_multipliers(out, "config.plan.lr_multipliers", plan["lr_multipliers"])

    model = _sub(config, "model")
    out.section("config.model", model, MODEL)
    kwargs = _sub(model, "kwargs")
    for name in kwargs.keys() if kwargs is not None else ():
        if str(name).endswith("dropout"):  # mobilenet_v2, inception_v3, vgg: dropout; aux_dropout
            out.check(f"config.model.kwargs.{name}", kwargs[name], Setting(DROPOUT, _DROPOUT_HINT))

    data = _sub(config, "data")
    good = out.section("config.data", data, DATA)
    if _has(data, "buckets"):
        _check_buckets(out, data["buckets"], good.get("max_length"))
    if _has(data, "crop_scale"):
        _check_pair(
            out, "config.data.crop_scale", data["crop_scale"], CROP_SHARE, CROP_SCALE_HINT, True
        )
    return out.lines


def check_numbers(config: Mapping) -> None:
    """Raises one ConfigError listing every numeric setting of `config` that cannot work."""
    lines = number_problems(config)
    if lines:
        count = f"{len(lines)} setting{'s' if len(lines) > 1 else ''}"
        raise ConfigError(
            f"The config has {count} that cannot work (found before anything was built):\n  "
            + "\n  ".join(lines)
        )


def check_label_count(names: Sequence[str], dataset: str, task: str = "classification") -> None:
    """A classifier needs at least two classes: with one, every prediction is right and nothing
    is learned; with none, there is no head to build. A detector needs one (where, not which)."""
    if task == "detection" and not names:
        raise ConfigError(
            f"config.data.name={dataset!r} has no class labels; a detector needs at least one. "
            "Check the dataset's annotations."
        )
    if task != "detection" and len(names) < 2:
        raise ConfigError(
            f"config.data.name={dataset!r} has {len(names)} class label(s) {list(names)}; a "
            "classifier needs at least 2. Check the dataset (an image folder needs one "
            "sub-folder per class) or config.data.name."
        )


# optim fields a group schedule may override (the shape of the schedule, and its peak), and the
# clocks it may run on (tlx.transfer.optim).
SCHEDULE_FIELDS = (
    "learning_rate",
    "warmup_steps",
    "decay",
    "final_fraction",
    "pct_start",
    "cut_frac",
    "ratio",
)
CLOCKS = ("run", "group")


def parse_multipliers(spec: str) -> dict[str, float]:
    """'head=10,layer_.*=0.5' -> {'head': 10.0, 'layer_.*': 0.5} (flag-friendly form)."""
    out = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        rx, sep, value = item.rpartition("=")
        if not sep or not rx:
            raise PlanError(f"lr_multipliers item {item!r} must look like 'group_regex=factor'")
        try:
            out[rx] = float(value)
        except ValueError as e:
            raise PlanError(f"lr_multipliers item {item!r}: {value!r} is not a number") from e
    return out


def _subkey(name: str) -> str:
    return f".{name}" if re.fullmatch(r"[A-Za-z_]\w*", name) else f"[{name!r}]"


def _check_steps_within_run(out: _Problems, prefix: str, good: Mapping, total_steps) -> None:
    """A warm-up as long as the run would never reach the peak rate."""
    if not total_steps:  # None: refused above; 0: nothing trains, so no schedule runs
        return
    for name in STEP_FIELDS:
        value = good.get(name)
        if value is not None and value >= total_steps:
            out.add(
                f"{prefix}.{name}",
                value,
                f"less than config.total_steps={total_steps}.",
                "Shorten the warm-up (0 turns it off) or train longer.",
            )


def _check_pair(out, key: str, value, each: Number, hint: str, empty_ok: bool) -> None:
    """(low, high): two numbers of `each` with low <= high; () when `empty_ok`."""
    if problem := pair_problem(value, each, empty_ok):
        out.add(key, value, f"{problem}.", hint)


def _check_multipliers(out: _Problems, key: str, spec) -> None:
    """'regex=factor,...': every factor a finite number > 0 (the regexes are matched against the
    model's groups by tlx.transfer.plans)."""
    if not spec:
        return
    if not isinstance(spec, str):
        out.add(key, spec, "a string 'group_regex=factor,...'.", LR_MULTIPLIERS_HINT)
        return
    try:
        factors = parse_multipliers(spec)
    except PlanError as e:
        out.add(key, spec, f"'group_regex=factor,...' ({e}).", LR_MULTIPLIERS_HINT)
        return
    bad = [f"{rx}={f!r}" for rx, f in factors.items() if POSITIVE.problem(f) is not None]
    if bad:
        out.add(
            key,
            spec,
            f"'group_regex=factor,...' with each factor {POSITIVE.describe()}; "
            f"{', '.join(bad)} is not.",
            LR_MULTIPLIERS_HINT,
        )


def _check_buckets(out: _Problems, buckets, max_length) -> None:
    key = "config.data.buckets"
    must = "increasing positive integers"
    if isinstance(buckets, str) or not isinstance(buckets, Sequence):
        out.add(key, buckets, f"a tuple of {must}.", BUCKETS_HINT)
        return
    if any(POSITIVE_INT.problem(b) is not None for b in buckets):
        out.add(key, buckets, f"{must}.", BUCKETS_HINT)
    elif list(buckets) != sorted(set(buckets)):
        out.add(key, buckets, f"{must}, each once.", BUCKETS_HINT)
    elif max_length is not None and any(b > max_length for b in buckets):
        longer = [b for b in buckets if b > max_length]
        out.add(
            key,
            buckets,
            f"at most config.data.max_length={max_length}; {longer} would never be used.",
            "Lower those buckets or raise data.max_length.",
        )
