"""Every experiment config builds: its plan fits the model and the run, before any compute."""

import importlib
import pathlib
import re

import pytest

from tlx.baselines import check_baseline, is_baseline
from tlx.experiment import build_experiment
from tlx.spec import REQUIRED_KEYS, UNTRAINED_ADAPT_METHODS, read_spec

CONFIGS = sorted(
    p.stem
    for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
    if p.stem not in {"__init__", "common"} and not p.stem.endswith("_base")
)

# Image datasets prepared from local files on first use (into the test session's data_dir).
LOCAL_IMAGE_DATA = ("fashion_mnist", "mnist_5k", "uci_digits")


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_and_documents_its_command(name, image_data_dir):
    module = importlib.import_module(f"configs.{name}")
    assert f"--config=configs/{name}.py" in module.__doc__  # the docstring gives the command
    config = module.get_config()
    for key in REQUIRED_KEYS:
        assert key in config, key
    if is_baseline(read_spec(config)):  # scikit-learn, no network or plan (test_baselines.py)
        check_baseline(read_spec(config))
        return
    if config.get("needs_download"):
        config = offline_stand_in(config, image_data_dir)
    elif config.data.name in LOCAL_IMAGE_DATA or config.data.name.startswith("fashion_mnist_c/"):
        config.data.data_dir = image_data_dir
    experiment = build_experiment(config, with_data=False)
    if config.total_steps == 0:  # an adaptation's statistics alone: nothing may train
        assert experiment.spec.adapt.method in UNTRAINED_ADAPT_METHODS
        return
    # something trains: a group, or frozen groups' BatchNorm scale and bias
    frozen_train = experiment.spec.model.frozen_batchnorm in ("affine", "tent")
    assert experiment.plan.stages[0].trainable or frozen_train
    assert experiment.plan.stages[-1].start_step < config.total_steps


def offline_stand_in(config, data_dir):
    """A config whose weights and data need a download: building it here must fail with an error
    naming the checkpoint's URL; the same architecture from scratch, on an offline dataset, then
    proves that its plan fits the model's groups."""
    from tlx.zoo.catalog import get_entry
    from tlx.zoo.resolve import CheckpointNotFoundError

    entry = get_entry(config.model.checkpoint)
    config.data.name, config.data.data_dir = "fashion_mnist", data_dir
    with pytest.raises(CheckpointNotFoundError, match=re.escape(entry.url)):
        build_experiment(config, with_data=False)
    config.model.checkpoint = ""
    config.model.arch = entry.arch
    config.model.kwargs = {
        k: v for k, v in {**entry.model_kwargs, **config.model.kwargs}.items() if k != "num_classes"
    }
    return config


def test_plans_differ_as_named():
    def trainable(name):
        config = importlib.import_module(f"configs.minilm_rt_{name}").get_config()
        return build_experiment(config, with_data=False).plan.stages[0].trainable

    assert trainable("feature_extraction") == ("head",)
    assert trainable("freeze_to") == ("layer_4", "layer_5", "head")
    assert len(trainable("finetune")) == 8  # embeddings, six layers, head
    assert trainable("progressive") == ("head",)
