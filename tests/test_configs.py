"""Every experiment config builds: its plan fits the model and the run, before any compute."""

import importlib
import pathlib

import pytest

from tlx.experiment import REQUIRED_KEYS, build_experiment

CONFIGS = sorted(
    p.stem
    for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
    if p.stem not in {"__init__"} and not p.stem.endswith("_base")
)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_and_documents_its_command(name):
    module = importlib.import_module(f"configs.{name}")
    assert f"--config=configs/{name}.py" in module.__doc__  # the docstring gives the command
    config = module.get_config()
    for key in REQUIRED_KEYS:
        assert key in config, key
    experiment = build_experiment(config, with_data=False)
    assert experiment.plan.stages[0].trainable  # something trains
    assert experiment.plan.stages[-1].start_step < config.total_steps


def test_plans_differ_as_named():
    def trainable(name):
        config = importlib.import_module(f"configs.minilm_rt_{name}").get_config()
        return build_experiment(config, with_data=False).plan.stages[0].trainable

    assert trainable("feature_extraction") == ("head",)
    assert trainable("freeze_to") == ("layer_4", "layer_5", "head")
    assert len(trainable("finetune")) == 8  # embeddings, six layers, head
    assert trainable("progressive") == ("head",)
