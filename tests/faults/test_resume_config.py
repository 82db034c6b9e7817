"""Resuming a workdir with another config: a different experiment is refused before anything is
written; a change of cadence or a longer run is allowed and recorded, never by rewriting the
run's config.json."""

import json
import shutil

import pytest

from tests.faults.conftest import launch, predict, short_error, snapshot, train_args


@pytest.fixture
def run_copy(straight_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(straight_run, workdir)
    return workdir


@pytest.mark.parametrize(
    "override, key",
    [
        ("--config.optim.learning_rate=0.05", "optim.learning_rate: 0.0001 -> 0.05"),
        ("--config.plan.name=finetune", "plan.name: 'progressive' -> 'finetune'"),
    ],
)
def test_a_different_experiment_is_refused_and_nothing_is_written(
    override, key, run_copy, tiny_bert_dir, rt_data_dir
):
    before = snapshot(run_copy)
    result = launch(train_args(tiny_bert_dir, rt_data_dir, run_copy, override))
    message = short_error(result, most_lines=16)
    assert key in message and "new --workdir" in message and "init_from" in message, message
    assert snapshot(run_copy) == before
    assert predict(run_copy, "Still usable.").returncode == 0


def test_a_longer_run_with_another_cadence_resumes_and_is_recorded(
    run_copy, tiny_bert_dir, rt_data_dir
):
    original = (run_copy / "config.json").read_bytes()
    extra = ["--config.total_steps=10", "--config.eval_every=4"]
    result = launch(train_args(tiny_bert_dir, rt_data_dir, run_copy, *extra))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_copy / "config.json").read_bytes() == original
    last = json.loads((run_copy / "history.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "resume" and last["from_step"] == 8
    assert last["changed"] == {
        "eval_every": {"from": 8, "to": 4},
        "total_steps": {"from": 8, "to": 10},
    }
    assert json.loads((run_copy / "summary.json").read_text())["steps"] == 10
