"""Every number of a config is checked before anything is built (issue #18): a bad learning
rate, weight decay, dropout rate, warm-up, fraction, size, ... is refused with a ConfigError that
names the key, the value and the allowed range, all bad values in one message; no real config or
sweep cell is refused."""

import importlib
import math
import pathlib
import re

import ml_collections
import pytest

from tlx import experiment
from tlx.config_checks import check_label_count, check_numbers, number_problems
from tlx.errors import ConfigError
from tlx.spec import read_spec
from tlx.transfer import plans

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_NAMES = sorted(
    p.stem
    for p in (REPO / "configs").glob("*.py")
    if p.stem not in {"__init__", "common"} and not p.stem.endswith("_base")
)
TEXT, IMAGE = "minilm_rt_progressive", "mnv2_fmnist_progressive"
NAN, INF = math.nan, math.inf


def load(name: str) -> ml_collections.ConfigDict:
    return importlib.import_module(f"configs.{name}").get_config()


def with_values(name: str, **values) -> ml_collections.ConfigDict:
    """The real config with `values` set at their dotted keys (`optim__learning_rate`), with the
    type checks of ConfigDict off so that a string can stand where a number should. ConfigDict
    turns a bool set on a float field into 1.0, so with a bool the config is a plain dict (as a
    config read from JSON is)."""
    config = load(name).to_dict()
    if not any(isinstance(v, bool) for v in values.values()):
        config = ml_collections.ConfigDict(config, type_safe=False)
    for key, value in values.items():
        *path, last = key.split("__")
        section = config
        for part in path:
            section = section[part]
        section[last] = value
    return config


# (config, key, bad value, the range the message states)
BAD = [
    (TEXT, "optim.learning_rate", -0.01, "a finite number in (0, 10]"),
    (TEXT, "optim.learning_rate", 0.0, "a finite number in (0, 10]"),
    (TEXT, "optim.learning_rate", NAN, "a finite number in (0, 10]"),
    (TEXT, "optim.learning_rate", INF, "a finite number in (0, 10]"),
    (TEXT, "optim.learning_rate", -INF, "a finite number in (0, 10]"),
    (TEXT, "optim.learning_rate", 1e9, "a finite number in (0, 10]"),
    (TEXT, "optim.learning_rate", "1e-4", "a finite number in (0, 10], not a str"),
    (TEXT, "optim.learning_rate", True, "a finite number in (0, 10], not a bool"),
    (TEXT, "optim.learning_rate", None, "a finite number in (0, 10], not None"),
    (TEXT, "optim.weight_decay", -1.0, "a finite number >= 0"),
    (TEXT, "optim.weight_decay", NAN, "a finite number >= 0"),
    (TEXT, "optim.warmup_steps", -1, "an integer >= 0"),
    (TEXT, "optim.warmup_steps", 2.5, "an integer >= 0"),
    (TEXT, "optim.warmup_steps", 360, "less than config.total_steps=360"),
    (TEXT, "optim.warmup_steps", 10_000, "less than config.total_steps=360"),
    (TEXT, "optim.unfreeze_warmup_steps", -4, "an integer >= 0"),
    (TEXT, "optim.unfreeze_warmup_steps", 360, "less than config.total_steps=360"),
    (TEXT, "optim.final_fraction", 1.5, "a finite number in [0, 1]"),
    (TEXT, "optim.final_fraction", -0.1, "a finite number in [0, 1]"),
    (TEXT, "optim.pct_start", 1.0, "a finite number in [0, 1)"),
    (TEXT, "optim.pct_start", -0.3, "a finite number in [0, 1)"),
    (TEXT, "optim.cut_frac", 1.0, "a finite number in [0, 1)"),
    (TEXT, "optim.cut_frac", NAN, "a finite number in [0, 1)"),
    (TEXT, "optim.ratio", 0.5, "a finite number >= 1"),
    (TEXT, "optim.b1", 1.0, "a finite number in [0, 1)"),
    (TEXT, "optim.b2", -0.5, "a finite number in [0, 1)"),
    (TEXT, "optim.eps", 0.0, "a finite number > 0"),
    (TEXT, "optim.clip_norm", -1.0, "a finite number > 0 (or 0 / None: no clipping)"),
    (TEXT, "optim.clip_norm", INF, "a finite number > 0 (or 0 / None: no clipping)"),
    (TEXT, "plan.layer_decay", 0.0, "a finite number in (0, 1]"),
    (TEXT, "plan.layer_decay", 2.6, "a finite number in (0, 1]"),
    (TEXT, "plan.every", 0, "a positive integer"),
    (TEXT, "plan.k", -1, "a positive integer"),
    (TEXT, "plan.start", 0, "a positive integer"),
    (TEXT, "plan.lr_slice", (1.0, 0.01), "(low, high) with low <= high"),
    (TEXT, "plan.lr_slice", (0.0, 1.0), "each a finite number > 0"),
    (TEXT, "plan.lr_multipliers", "head=0", "head=0.0 is not"),
    (TEXT, "plan.lr_multipliers", "head=inf", "head=inf is not"),
    (TEXT, "plan.lr_multipliers", "head=-10", "head=-10.0 is not"),
    (TEXT, "plan.lr_multipliers", "head=ten", "'ten' is not a number"),
    (TEXT, "model.classifier_dropout", 1.0, "a finite number in [0, 1)"),
    (TEXT, "model.classifier_dropout", -0.1, "a finite number in [0, 1)"),
    (TEXT, "model.dropout", 1.0, "a finite number in [0, 1) (or None: the model's own)"),
    (TEXT, "data.max_length", 1, "an integer >= 2"),
    (TEXT, "data.buckets", (64, 48), "increasing positive integers"),
    (TEXT, "data.buckets", (0, 64), "increasing positive integers"),
    (TEXT, "data.buckets", (48, 128), "at most config.data.max_length=64"),
    (TEXT, "data.train_examples", -1, "an integer >= 0"),
    (TEXT, "data.eval_batch_size", 0, "a positive integer"),
    (TEXT, "total_steps", -1, "an integer >= 0"),  # 0: an adaptation that trains nothing
    (TEXT, "total_steps", "360", "an integer >= 0, not a str"),
    (TEXT, "batch_size", 0, "a positive integer"),
    (TEXT, "steps_per_call", 0, "a positive integer"),
    (TEXT, "grad_accum_steps", 0, "a positive integer"),
    (TEXT, "seed", -1, "an integer in [0, 4294967295]"),
    (TEXT, "seed", 2**40, "an integer in [0, 4294967295]"),
    (IMAGE, "optim.learning_rate", -0.01, "a finite number in (0, 10]"),
    (IMAGE, "optim.learning_rate", 1e9, "a finite number in (0, 10]"),
    (IMAGE, "model.kwargs.dropout", 1.0, "a finite number in [0, 1)"),
    (IMAGE, "model.kwargs.dropout", -0.1, "a finite number in [0, 1)"),
    (IMAGE, "model.image_size", -1, "an integer >= 0"),
    (IMAGE, "model.frozen_batchnorm_lr_multiplier", 0.0, "a finite number > 0"),
    (IMAGE, "model.frozen_batchnorm_lr_multiplier", INF, "a finite number > 0"),
    (IMAGE, "data.crop_scale", (0.0, 1.0), "0, 1]"),
    (IMAGE, "data.crop_scale", (0.8, 0.5), "(low, high) with low <= high"),
    (IMAGE, "data.crop_scale", (0.5, 1.5), "(low, high) with low <= high"),
    (IMAGE, "data.eval_examples", -1, "an integer >= 0"),
    (IMAGE, "data.workers", -2, "an integer >= 0"),
    (IMAGE, "keep_checkpoints", 0, "a positive integer"),
    (IMAGE, "sharding.model_axis", 0, "a positive integer"),
    (IMAGE, "log_every", 0, "a positive integer"),
]


@pytest.mark.parametrize(
    "name, key, value, allowed", BAD, ids=[f"{n[:5]}-{k}={v!r}" for n, k, v, _ in BAD]
)
def test_each_bad_number_is_refused_naming_key_value_and_range(name, key, value, allowed):
    config = with_values(name, **{key.replace(".", "__"): value})
    with pytest.raises(ConfigError) as err:
        check_numbers(config)
    message = str(err.value)
    assert f"config.{key}={value!r} must be " in message, message
    assert allowed in message, message
    assert "The config has 1 setting that cannot work" in message, message
    line = next(x for x in message.splitlines() if f"config.{key}=" in x)
    assert line.count(". ") >= 1 and line.endswith("."), line  # then what to do


def test_a_bad_group_schedule_is_named_by_its_group():
    config = with_values(TEXT)
    config.optim.group_schedules = {
        "head": {"learning_rate": NAN, "decay": "constant"},
        "layer_*": {"warmup_steps": 400, "cut_frac": 1.5},
    }
    lines = number_problems(config)
    assert len(lines) == 3, lines
    starts = (
        "config.optim.group_schedules.head.learning_rate=nan must be a finite number in (0, 10]",
        "config.optim.group_schedules['layer_*'].cut_frac=1.5 must be a finite number in [0, 1)",
        "config.optim.group_schedules['layer_*'].warmup_steps=400 must be less than "
        "config.total_steps=360",
    )
    for start in starts:
        assert any(line.startswith(start) for line in lines), (start, lines)


def test_all_bad_numbers_are_reported_together():
    config = with_values(
        TEXT,
        optim__learning_rate=-0.01,
        optim__weight_decay=-1.0,
        optim__warmup_steps=500,
        model__classifier_dropout=1.0,
        plan__layer_decay=NAN,
        data__buckets=(48, 128),
        optim__b1="0.9",
    )
    with pytest.raises(ConfigError) as err:
        check_numbers(config)
    message = str(err.value)
    assert message.startswith("The config has 7 settings that cannot work")
    for shown in (
        "config.optim.learning_rate=-0.01",
        "config.optim.weight_decay=-1.0",
        "config.model.classifier_dropout=1.0",
        "config.plan.layer_decay=nan",
        "config.data.buckets=(48, 128)",
        "config.optim.b1='0.9' must be a finite number in [0, 1), not a str",
        "config.optim.warmup_steps=500 must be less than config.total_steps=360",
    ):
        assert shown in message, (shown, message)
    assert len(message.splitlines()) == 8


def test_off_values_and_whole_floats_pass():
    config = with_values(
        TEXT,
        optim__clip_norm=None,
        optim__unfreeze_warmup_steps=None,
        optim__weight_decay=0,
        model__dropout=0.0,
        total_steps=360.0,
        plan__lr_slice=(),
    )
    assert number_problems(config) == []
    config.optim.clip_norm = 0
    assert number_problems(config) == []


def sweep_cells(name, tmp_path):
    """(label, config) for the config and, when it declares a sweep, for each of its cells."""
    config = load(name)
    yield name, config
    if config.get("sweep"):
        from experiments import sweep as sw
        from experiments.sweep.fields import apply

        plan = sw.plan_sweep(f"configs/{name}.py", None, tmp_path)
        assert plan.cells
        for cell in plan.cells:
            yield f"{name}/{cell.name}", apply(config, cell.overrides)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_real_config_and_sweep_cell_passes(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    checked = 0
    for label, config in sweep_cells(name, tmp_path):
        assert number_problems(config) == [], label
        read_spec(config)  # every default, name and cross-field check
        checked += 1
    assert checked > 1 or not load(name).get("sweep")


def test_build_experiment_refuses_bad_numbers_before_loading_anything(tmp_path, monkeypatch):
    from tlx.zoo.resolve import CheckpointNotFoundError

    def loads(*args, **kwargs):
        raise AssertionError("something was loaded before the numbers were checked")

    config = load(TEXT)
    config.model.checkpoint = str(tmp_path / "no_such_checkpoint")
    # Without the bad rate, loading the missing checkpoint is what fails ...
    monkeypatch.setattr(experiment.sources, "label_names", lambda name, data_dir: ["neg", "pos"])
    with pytest.raises(CheckpointNotFoundError):
        experiment.build_experiment(config, with_data=False)
    # ... with it, the rate is refused first, before labels, model or data are read.
    monkeypatch.setattr(experiment.sources, "label_names", loads)
    monkeypatch.setattr(experiment, "build_model", loads)
    config.optim.learning_rate = -0.01
    with pytest.raises(ConfigError, match=re.escape("config.optim.learning_rate=-0.01 must be")):
        experiment.build_experiment(config, with_data=False)


def test_a_dataset_with_fewer_than_two_classes_is_refused(monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was built for a one-class dataset")

    monkeypatch.setattr(experiment.sources, "label_names", lambda name, data_dir: ["only"])
    monkeypatch.setattr(experiment, "build_model", no_model)
    with pytest.raises(ConfigError, match=r"has 1 class label\(s\) \['only'\]; a classifier"):
        experiment.build_experiment(load(TEXT), with_data=False)
    with pytest.raises(ConfigError, match="has 0 class label"):
        check_label_count([], "image_folder:/empty")
    check_label_count(["neg", "pos"], "rotten_tomatoes")


def test_plan_builders_use_the_same_ranges():
    groups = ["a", "b", "head"]
    with pytest.raises(plans.PlanError, match=r"layer_decay=nan must be a finite number in \(0"):
        plans.with_multipliers(plans.finetune(groups), groups, layer_decay=NAN)
    with pytest.raises(plans.PlanError, match="every=0 must be a positive integer"):
        plans.progressive(groups, every=0)
    # An infinite multiplier (a custom stage's) is refused like a negative one.
    cfg = {"name": "custom", "stages": [(0, [("head", INF), (".*", None)])]}
    with pytest.raises(plans.PlanError, match="use FROZEN or > 0"):
        plans.build_plan(groups, cfg)
