"""Model selection on validation: the best evaluation's weights are reported, early stopping ends
a run that stopped improving, and a killed run selects exactly what an unbroken one does."""

import json

import numpy as np
import pytest

from tests.test_trainer import Killed, kill_at, tiny_config
from tlx import run_folder
from tlx.checkpoint import Checkpoints
from tlx.errors import ConfigError
from tlx.experiment import build_experiment
from tlx.selection import Selection, SelectionState
from tlx.spec import SelectionSpec
from tlx.trainer import train
from tlx.tree import flatten

QUIET = dict(log=lambda *_: None, progress=False)


def selecting_config(tiny_bert_dir, rt_data_dir, **selection):
    config = tiny_config(tiny_bert_dir, rt_data_dir, eval_every=2, total_steps=8)
    config.selection = {"metric": "loss", "mode": "", "patience": 0, "min_delta": 0.0, **selection}
    return config


def evaluations(workdir, split="validation") -> dict[int, dict]:
    return {r["step"]: r for r in run_folder.read_metrics(workdir) if r["split"] == split}


def test_the_run_reports_every_split_at_its_best_validation_step(
    tiny_bert_dir, rt_data_dir, tmp_path
):
    summary = train(
        build_experiment(selecting_config(tiny_bert_dir, rt_data_dir)), tmp_path, **QUIET
    )
    curve = evaluations(tmp_path)
    assert sorted(curve) == [2, 4, 6, 8]
    best = min(curve, key=lambda s: (curve[s]["loss"], s))  # the first lowest validation loss
    assert summary["selected_step"] == best == summary["selection"]["selected_step"]
    assert summary["selection"]["value"] == pytest.approx(curve[best]["loss"], rel=1e-6)
    assert summary["last_step"] == 8
    # The reported validation result is the best step's, re-evaluated from its checkpoint.
    reported = summary["results"]["validation"]
    assert reported["loss"] == pytest.approx(curve[best]["loss"], rel=1e-5)
    assert reported["accuracy"] == pytest.approx(curve[best]["accuracy"], abs=1e-9)
    finals = {
        r["split"]: r for r in run_folder.read_metrics(tmp_path) if r["split"].startswith("final_")
    }
    assert {r["step"] for r in finals.values()} == {best}
    # checkpoints_best/ holds the selected step: what tlx.predict and init_from load by default.
    assert run_folder.selected_checkpoints(tmp_path) == tmp_path / run_folder.BEST_CHECKPOINTS
    assert Checkpoints(run_folder.selected_checkpoints(tmp_path)).latest_step() == best
    # Compute: counted per step, growing faster as the progressive plan unfreezes more groups.
    flops = [curve[s]["train_flops"] for s in sorted(curve)]
    assert flops[0] > 0 and all(b - a > 0 for a, b in zip(flops, flops[1:]))
    per_step = [(b - a) / 2 for a, b in zip([0.0, *flops], flops)]  # 2 steps between evaluations
    assert per_step == sorted(per_step) and per_step[-1] > 1.5 * per_step[0]
    assert summary["flops"]["total"] == flops[-1]
    assert summary["flops"]["to_selected"] == curve[best]["train_flops"]


def test_without_a_metric_the_last_step_is_selected(tiny_bert_dir, rt_data_dir, tmp_path):
    summary = train(build_experiment(tiny_config(tiny_bert_dir, rt_data_dir)), tmp_path, **QUIET)
    assert summary["selected_step"] == summary["last_step"] == 8
    assert summary["selection"] == {"metric": None, "selected_step": 8}
    assert not (tmp_path / run_folder.BEST_CHECKPOINTS).exists()
    assert run_folder.selected_checkpoints(tmp_path) == tmp_path / run_folder.CHECKPOINTS


def test_early_stopping_ends_the_run_and_a_rerun_trains_no_further(
    tiny_bert_dir, rt_data_dir, tmp_path
):
    # No later evaluation can beat the first by 10 nats: it stays the best, and two evaluations
    # without improvement (steps 4 and 6) stop the run at step 6.
    config = selecting_config(tiny_bert_dir, rt_data_dir, patience=2, min_delta=10.0)
    summary = train(build_experiment(config), tmp_path, **QUIET)
    assert summary["last_step"] == summary["selection"]["stopped_early_at"] == 6
    assert summary["selected_step"] == 2
    assert sorted(evaluations(tmp_path)) == [2, 4, 6]
    assert Checkpoints(tmp_path / "checkpoints").latest_step() == 6  # the stop is saved
    again = train(build_experiment(config), tmp_path, **QUIET)
    assert again["resumed_from_step"] == 6 and again["last_step"] == 6
    assert again["results"] == summary["results"]
    assert run_folder.is_finished(tmp_path)


def test_a_killed_run_selects_and_reports_as_an_unbroken_one(tiny_bert_dir, rt_data_dir, tmp_path):
    config = selecting_config(tiny_bert_dir, rt_data_dir, metric="accuracy")
    straight = train(build_experiment(config), tmp_path / "straight", **QUIET)

    killed = build_experiment(config)
    killed.train_batches = kill_at(killed.train_batches, at=7)
    with pytest.raises(Killed):
        train(killed, tmp_path / "resumed", **QUIET)
    resumed = train(build_experiment(config), tmp_path / "resumed", **QUIET)
    assert resumed["resumed_from_step"] == 6
    for key in ("selected_step", "selection", "results"):
        assert resumed[key] == straight[key], key
    # The compute count carries over the kill (it travels in the checkpoint's meta).
    assert resumed["flops"]["total"] == straight["flops"]["total"]
    assert resumed["flops"]["to_selected"] == straight["flops"]["to_selected"]
    a = flatten(
        Checkpoints(run_folder.selected_checkpoints(tmp_path / "straight")).restore_params()
    )
    b = flatten(Checkpoints(run_folder.selected_checkpoints(tmp_path / "resumed")).restore_params())
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_init_from_starts_from_the_other_runs_selected_weights(
    tiny_bert_dir, rt_data_dir, tmp_path
):
    config = selecting_config(tiny_bert_dir, rt_data_dir, patience=2, min_delta=10.0)
    first = train(build_experiment(config), tmp_path / "first", **QUIET)
    assert first["selected_step"] == 2  # not its last step, 6
    logs = []
    import jax

    from tlx.run_start import initial_params

    follow = tiny_config(tiny_bert_dir, rt_data_dir, init_from=str(tmp_path / "first"))
    params, _ = initial_params(
        build_experiment(follow, with_data=False), jax.random.key(1), logs.append
    )
    selected = flatten(
        Checkpoints(tmp_path / "first" / run_folder.BEST_CHECKPOINTS).restore_params(2)
    )
    last = flatten(Checkpoints(tmp_path / "first" / "checkpoints").restore_params(6))
    flat = flatten(params)
    assert all(np.array_equal(flat[k], selected[k]) for k in flat)
    assert not all(np.array_equal(flat[k], last[k]) for k in flat)
    assert any("checkpoints_best/2" in line for line in logs)


def test_selection_rules():
    selection = Selection(
        SelectionSpec(metric="accuracy", patience=2, min_delta=0.01), "validation"
    )
    assert selection.observe(2, {"accuracy": 0.50})  # the first evaluation is the best so far
    assert not selection.observe(4, {"accuracy": 0.505})  # within min_delta
    assert selection.observe(6, {"accuracy": 0.52})
    assert not selection.observe(8, {"accuracy": 0.52}) and not selection.should_stop()
    assert not selection.observe(10, {"accuracy": 0.40}) and selection.should_stop()
    state = SelectionState.from_meta({"selection": selection.state.as_meta()})
    assert state == selection.state  # travels in a checkpoint's meta
    assert SelectionState.from_meta({"step": 4}) == SelectionState()  # a checkpoint from before
    loss = Selection(SelectionSpec(metric="loss"), "validation")
    assert loss.observe(2, {"loss": 0.7}) and loss.observe(4, {"loss": 0.6})
    assert not loss.observe(6, {"loss": 0.65})


def test_a_selection_the_run_cannot_make_is_refused_before_compute(tiny_bert_dir, rt_data_dir):
    config = selecting_config(tiny_bert_dir, rt_data_dir, metric="f1")
    with pytest.raises(ConfigError, match="selection.metric='f1' is not a metric"):
        build_experiment(config, with_data=False)
    config = selecting_config(tiny_bert_dir, rt_data_dir, metric="", patience=3)
    with pytest.raises(ConfigError, match="metric is empty"):
        build_experiment(config, with_data=False)
    config = selecting_config(tiny_bert_dir, rt_data_dir, mode="maximise")
    with pytest.raises(ConfigError, match="selection.mode='maximise'"):
        build_experiment(config, with_data=False)
    assert json  # the module reads metrics through tlx.run_folder


def test_the_result_table_says_which_step_its_numbers_are_from():
    from rich.console import Console

    from tlx.report import result_table

    summary = {
        "plan": "finetune", "model": "m", "steps": 600, "last_step": 400, "selected_step": 200,
        "resumed_from_step": 0, "train_seconds_this_run": 12.0,
        "results": {"test": {"accuracy": 0.5, "loss": 0.7, "examples": 10}},
        "selection": {"metric": "accuracy", "split": "validation", "value": 0.61,
                      "stopped_early_at": 400},
    }  # fmt: skip
    console = Console(width=200, record=True)
    console.print(result_table(summary))
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert (
        "stopped early at 400; results at step 200, the best validation accuracy (0.6100)" in text
    )
    summary["selection"] = {"metric": None, "selected_step": 400}
    console.print(result_table(summary))
    assert "400 steps; training time" in " ".join(console.export_text().split())
