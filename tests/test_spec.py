"""The run spec: a config read once into typed, frozen sections, with every default and check."""

import dataclasses
import json

import pytest

from configs import minilm_rt_progressive, mnv2_fmnist_progressive
from tlx.errors import ConfigError, FeatureCacheError
from tlx.spec import ModelSpec, OptimSpec, PlanSpec, RunSpec, as_plain, read_spec


def test_a_config_and_its_config_json_read_to_the_same_spec():
    config = minilm_rt_progressive.get_config()
    spec = read_spec(config)
    assert isinstance(spec, RunSpec)
    # config.json holds plain JSON (tuples as lists); read back, it is the same run.
    again = read_spec(json.loads(json.dumps(as_plain(config))))
    assert again == spec
    assert again.config == spec.config == as_plain(config)
    assert read_spec(spec) is spec  # a spec is already read


def test_sections_are_typed_and_frozen():
    spec = read_spec(mnv2_fmnist_progressive.get_config())
    assert spec.model.kwargs["dropout"] == 0.2
    assert spec.data.crop_scale == (0.5, 1.0) and isinstance(spec.data.eval_splits, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.total_steps = 1
    with pytest.raises(TypeError):  # read-only mappings, not dicts
        spec.model.kwargs["dropout"] = 0.5


def test_defaults_fill_what_a_config_leaves_out():
    config = minilm_rt_progressive.get_config()
    for key in ("log_every", "keep_checkpoints", "steps_per_call", "parallel"):
        del config[key]
    del config.data["eval_batch_size"]
    spec = read_spec(config)
    assert (spec.log_every, spec.keep_checkpoints, spec.steps_per_call) == (50, 2, 1)
    assert spec.parallel == "jit"
    assert spec.eval_batch_size == spec.batch_size == 32  # evaluation defaults to the train batch
    assert spec.data.data_dir is None  # '' in the config: $TLX_DATA_DIR or the default folder


def test_fields_that_label_a_run_are_kept_apart():
    config = minilm_rt_progressive.get_config()
    config.strategy = "progressive"  # a sweep's label: the run does not read it
    spec = read_spec(config)
    assert spec.labels == {"strategy": "progressive"}
    assert spec.config["strategy"] == "progressive"  # and config.json records it


@pytest.mark.parametrize(
    "section, wrong, message",
    [
        ("model", {"name": "bert_classifier", "poolling": "mean"}, "unknown fields ['poolling']"),
        ("plan", {"k": 2}, "config.plan lacks ['name']"),
        ("optim", {"warmup_steps": 0}, "config.optim lacks ['learning_rate']"),
        ("data", "rotten_tomatoes", "must be a section of fields"),
    ],
)
def test_a_malformed_section_is_named(section, wrong, message):
    config = minilm_rt_progressive.get_config().to_dict()
    config[section] = wrong
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_spec(config)


@pytest.mark.parametrize(
    "key, value, error, message",
    [
        ("parallel", "pmapp", ConfigError, "config.parallel='pmapp' is not one of"),
        ("feature_cache", "yes", FeatureCacheError, "must be one of"),
        ("model.compute_dtype", "int8", ConfigError, "bfloat16 is the mixed-precision"),
        ("model.frozen_batchnorm", "thaw", ConfigError, "config.model.frozen_batchnorm='thaw'"),
        ("grad_accum_steps", 3, ConfigError, "grad_accum_steps=3 must divide"),
        ("total_steps", 0, ConfigError, "total_steps=0 trains nothing"),
        ("data.eval_split", "dev", ConfigError, "eval_split='dev' .* is not among"),
        ("adapt", {"method": "adabn"}, ConfigError, "needs config.adapt.target"),
        ("adapt", {"method": "mmd", "target": "x"}, ConfigError, "'mmd' is not one of"),
        ("adapt", {"target": "x", "weight": -1}, ConfigError, "weight=-1 must be"),
        ("adapt", {"tagret": "x"}, ConfigError, r"unknown fields \['tagret'\]"),
    ],
)
def test_choices_and_settings_that_must_agree_are_checked(key, value, error, message):
    config = minilm_rt_progressive.get_config().to_dict()
    node, *path = key.split(".")
    if path:
        config[node][path[0]] = value
    else:
        config[node] = value
    with pytest.raises(error, match=message):
        read_spec(config)


def test_every_missing_top_level_key_is_listed():
    config = minilm_rt_progressive.get_config().to_dict()
    del config["seed"], config["optim"]
    with pytest.raises(ConfigError, match=r"lacks required keys \['seed', 'optim'\]"):
        read_spec(config)


def test_library_functions_take_a_section_or_a_plain_mapping():
    assert OptimSpec.of({"learning_rate": 0.1}) == OptimSpec(learning_rate=0.1)
    spec = OptimSpec(learning_rate=0.1, decay="linear")
    assert OptimSpec.of(spec) is spec
    changed = spec.with_fields({"decay": "constant", "clock": "group"})
    assert (changed.decay, changed.learning_rate) == ("constant", 0.1)
    assert PlanSpec.of({"name": "freeze_to", "k": 3, "lr_slice": [0.1, 1]}).lr_slice == (0.1, 1)
    assert ModelSpec.of({"name": "image_classifier", "compute_dtype": ""}).compute_dtype == (
        "float32"
    )


def test_init_from_names_fields_of_its_own_config():
    config = mnv2_fmnist_progressive.get_config().to_dict()
    config["seed"], config["init_from"] = 2, "runs/source/data.name={data.name},seed={seed}"
    assert read_spec(config).init_from == "runs/source/data.name=fashion_mnist,seed=2"
    config["init_from"] = "runs/source/{sed}"
    with pytest.raises(ConfigError, match=r"names \{sed\}, which is not a field"):
        read_spec(config)
