"""Aggregating runs that select on validation (experiments.aggregate.selected): each cell's
selected step, the wall time and training FLOPs to it, its last step and early stop; columns that
appear only in studies that selected, so published tables without selection stay as they were."""

import csv
import json

import pytest

from experiments import aggregate as agg
from tests.test_sweep import fabricate
from tlx import run_folder

SELECTING = {"metric": "loss", "split": "validation", "mode": "min", "patience": 1}

# (plan, seed): validation evaluations {step: (accuracy, loss, elapsed_seconds)}, the selected
# step, the step the run stopped early at (None: it ran to total_steps, 20).
RUNS = {
    ("finetune", 0): ({5: (0.70, 0.9, 10.0), 10: (0.80, 0.5, 20.0), 15: (0.79, 0.6, 30.0)}, 10, 15),
    ("finetune", 1): (
        {5: (0.72, 0.8, 11.0), 10: (0.78, 0.6, 21.0), 15: (0.81, 0.5, 31.0), 20: (0.82, 0.4, 41.0)},
        20,
        None,
    ),
    ("progressive", 0): ({5: (0.66, 0.7, 6.0), 10: (0.65, 0.8, 12.0)}, 5, 10),
    # patience runs out at the last step: stopped_early_at is set, but that is no early stop
    ("progressive", 1): (
        {5: (0.60, 0.9, 7.0), 10: (0.70, 0.7, 13.0), 15: (0.76, 0.6, 19.0), 20: (0.74, 0.7, 25.0)},
        15,
        20,
    ),
}


def write_cell(folder, seed, curve, selected, stopped, selection=SELECTING, total=20, **extra):
    folder.mkdir(parents=True)
    (folder / run_folder.CONFIG).write_text(
        json.dumps({"seed": seed, "total_steps": total, "data": {"eval_split": "validation"}})
    )
    records = []
    for step, (acc, loss, elapsed) in curve.items():
        # a train record with a misleading elapsed_seconds: only the eval split's counts
        records.append({"step": step, "split": "train", "loss": loss, "elapsed_seconds": 999.0})
        records.append(
            {
                "step": step,
                "split": "validation",
                "accuracy": acc,
                "loss": loss,
                "examples": 100,
                "elapsed_seconds": elapsed,
            }
        )
    acc, loss, _ = curve[selected]
    for split in ("validation", "test"):
        records.append({"step": selected, "split": f"final_{split}", "accuracy": acc, "loss": loss})
    (folder / run_folder.METRICS).write_text("".join(json.dumps(r) + "\n" for r in records))
    last = stopped or total
    if selection is None:
        described = {"metric": None, "selected_step": selected}
    else:
        described = {**selection, "min_delta": 0.0, "value": loss}
        described |= {"selected_step": selected, "stopped_early_at": stopped}
    summary = {
        "steps": total,
        "last_step": last,
        "selected_step": selected,
        "selection": described,
        "train_seconds_this_run": max(e for _, _, e in curve.values()),
        "results": {
            "validation": {"accuracy": acc, "loss": loss, "examples": 100},
            "test": {"accuracy": acc - 0.01, "loss": loss, "examples": 100},
        },
        **extra,
    }
    (folder / run_folder.SUMMARY).write_text(json.dumps(summary))


def write_study(root, runs=RUNS, **kw):
    cells = []
    for (plan, seed), (curve, selected, stopped) in runs.items():
        name = f"plan.name={plan},seed={seed}"
        overrides = {"plan.name": plan, "seed": seed}
        cells.append({"name": name, "overrides": overrides, "total_steps": 20})
        write_cell(root / name, seed, curve, selected, stopped, **kw)
    sweep = {"config": "configs/x.py", "keys": ["plan.name", "seed"], "cells": cells}
    (root / "sweep.json").write_text(json.dumps(sweep))


def csv_rows(root):
    with open(root / "aggregate.csv") as f:
        return {r["cell"]: r for r in csv.DictReader(f)}


def test_each_cell_reports_its_selected_step_and_the_time_to_it(tmp_path):
    write_study(tmp_path)
    result = agg.aggregate(tmp_path, group_by=None, over="seed")
    rows = {r["cell"]: r for r in result["rows"]}
    expected = {  # selected_step, seconds_to_selected, last_step, stopped_early
        "plan.name=finetune,seed=0": (10, 20.0, 15, True),
        "plan.name=finetune,seed=1": (20, 41.0, 20, False),
        "plan.name=progressive,seed=0": (5, 6.0, 10, True),
        "plan.name=progressive,seed=1": (15, 19.0, 20, False),
    }
    for cell, values in expected.items():
        assert tuple(rows[cell][c] for c in agg.SELECTION_COLUMNS) == values, cell
        assert rows[cell]["status"] == "finished"  # stopped early is finished
    assert agg.FLOPS_COLUMN not in rows["plan.name=finetune,seed=0"]  # no summary records FLOPs

    written = csv_rows(tmp_path)
    header = list(next(iter(written.values())))
    assert header[-4:] == list(agg.SELECTION_COLUMNS)
    assert written["plan.name=finetune,seed=0"]["seconds_to_selected"] == "20.0"
    assert written["plan.name=progressive,seed=0"]["stopped_early"] == "True"
    # the selected step's results are the reported ones
    assert float(written["plan.name=finetune,seed=0"]["validation_accuracy"]) == 0.80

    groups = {g["keys"]["plan.name"]: g for g in result["groups"]}
    assert groups["finetune"]["selected_step"][:3:2] == (15.0, 2)
    assert groups["finetune"]["seconds_to_selected"][0] == pytest.approx(30.5)
    assert groups["progressive"]["last_step"][0] == 15.0
    assert groups["progressive"]["stopped_early"][0] == 0.5
    md = result["markdown"]
    assert "| selected step | seconds to selected | last step | stopped early (cells) |" in md
    assert "| finetune | 2 |" in md and "| 15 ± 7 | 30.5 ± 14.8 | 18 ± 4 | 1/2 |" in md
    assert "| 10 ± 7 | 12.5 ± 9.2 | 15 ± 7 | 1/2 |" in md
    assert "honest time to train for each arm" in md
    assert "- 4 cells: validation loss (min), patience 1, min_delta 0" in md


def test_time_to_an_accuracy_still_works_beside_selection(tmp_path):
    write_study(tmp_path)
    result = agg.aggregate(tmp_path, group_by=None, over="seed", time_to_accuracy=[0.75])
    rows = {r["cell"]: r for r in result["rows"]}
    assert rows["plan.name=finetune,seed=0"]["seconds_to_0.75"] == 20.0
    assert rows["plan.name=finetune,seed=1"]["steps_to_0.75"] == 10
    assert rows["plan.name=progressive,seed=0"]["seconds_to_0.75"] == ""  # stopped before
    assert rows["plan.name=progressive,seed=1"]["steps_to_0.75"] == 15
    assert "| seconds to 0.75 | steps to 0.75 |" in result["markdown"]
    assert "seconds to selected" in result["markdown"]


def test_the_later_evaluation_of_a_step_evaluated_twice_times_it(tmp_path):
    write_study(tmp_path)
    metrics = tmp_path / "plan.name=finetune,seed=0" / run_folder.METRICS
    # a resumed run evaluated step 10 again, timed from its own start
    again = {
        "step": 10,
        "split": "validation",
        "accuracy": 0.80,
        "loss": 0.5,
        "elapsed_seconds": 4.0,
    }
    metrics.write_text(metrics.read_text() + json.dumps(again) + "\n")
    rows = {r["cell"]: r for r in agg.aggregate(tmp_path, group_by=None)["rows"]}
    assert rows["plan.name=finetune,seed=0"]["seconds_to_selected"] == 4.0


def test_a_study_without_selection_gets_no_new_columns(tmp_path):
    fabricate(tmp_path / "old")  # summaries from before selection existed
    old = agg.aggregate(tmp_path / "old", group_by=None, time_to_accuracy=[0.72])
    new_columns = {*agg.SELECTION_COLUMNS, agg.FLOPS_COLUMN}
    assert not new_columns & set(old["rows"][0]) and "selected" not in old["markdown"]
    # runs with selection off (summary["selection"]["metric"] is None) add none either
    write_study(tmp_path / "off", selection=None)
    off = agg.aggregate(tmp_path / "off", group_by=None)
    assert not new_columns & set(next(iter(csv_rows(tmp_path / "off").values())))
    assert "selected" not in off["markdown"]


def test_cells_without_selection_beside_selecting_ones_report_their_last_step(tmp_path):
    write_study(tmp_path)
    old = tmp_path / "plan.name=progressive,seed=1"
    summary = json.loads((old / run_folder.SUMMARY).read_text())
    for key in ("last_step", "selected_step", "selection"):  # as before selection existed
        del summary[key]
    (old / run_folder.SUMMARY).write_text(json.dumps(summary))
    result = agg.aggregate(tmp_path, group_by=None)
    rows = {r["cell"]: r for r in result["rows"]}
    row = rows["plan.name=progressive,seed=1"]
    assert [row[c] for c in agg.SELECTION_COLUMNS] == [20, 25.0, 20, False]
    assert "- 3 cells: validation loss (min)" in result["markdown"]
    assert "- 1 cell: no selection (the last step)" in result["markdown"]


def test_flops_to_the_selected_step_sum_each_stage_up_to_it():
    staged = {"flops": {"per_step": {"0": 1e9, "1": 3e9}, "stage_starts": [0, 10]}}
    assert agg.flops_to_step(staged, 15) == 10 * 1e9 + 5 * 3e9
    assert agg.flops_to_step(staged, 5) == 5e9
    assert agg.flops_to_step(staged, 10) == 10e9
    assert agg.flops_to_step(staged, 0) == 0.0
    assert agg.flops_to_step({"flops": {"per_step": 2e9}}, 7) == 14e9  # every stage alike
    assert agg.flops_to_step({"flops_per_step": 2e9}, 7) == 14e9  # the one-stage shorthand
    assert agg.flops_to_step({"steps": 10}, 7) is None  # not recorded
    three = {"flops": {"per_step": {0: 1.0, 1: 10.0, 2: 100.0}, "stage_starts": [0, 2, 4]}}
    assert agg.flops_to_step(three, 6) == 2 * 1.0 + 2 * 10.0 + 2 * 100.0
    with pytest.raises(ValueError, match="no stage 1"):
        agg.flops_to_step({"flops": {"per_step": {"0": 1.0}, "stage_starts": [0, 10]}}, 15)
    with pytest.raises(ValueError, match="not increasing"):
        agg.flops_to_step({"flops": {"per_step": {"0": 1.0}, "stage_starts": [5, 0]}}, 15)


def test_flops_columns_appear_where_summaries_record_them(tmp_path):
    flops = {"per_step": {"0": 1e9, "1": 3e9}, "stage_starts": [0, 10]}
    write_study(tmp_path, flops=flops)
    result = agg.aggregate(tmp_path, group_by=None, time_to_accuracy=[0.75])
    rows = {r["cell"]: r for r in result["rows"]}
    assert rows["plan.name=finetune,seed=0"]["flops_to_selected"] == 10e9  # selected 10
    assert rows["plan.name=finetune,seed=1"]["flops_to_selected"] == 40e9  # 10 + 10 x 3
    assert rows["plan.name=progressive,seed=0"]["flops_to_selected"] == 5e9
    assert rows["plan.name=finetune,seed=1"]["flops_to_0.75"] == 10e9  # reached at step 10
    assert rows["plan.name=progressive,seed=0"]["flops_to_0.75"] == ""  # never reached
    assert "| flops to selected | flops to 0.75 |" in result["markdown"]
    assert "| 2.50e+10 ± 2.1e+10 |" in result["markdown"]  # finetune: 10e9 and 40e9


def test_selection_columns_survive_the_records_file(tmp_path):
    write_study(tmp_path / "sweep")
    result = agg.aggregate(tmp_path / "sweep", group_by=None)
    [records] = agg.publish_records(result, tmp_path / "study")
    again = agg.aggregate(tmp_path / "again", group_by=None, records=records)
    assert again["rows"] == result["rows"] and again["markdown"] == result["markdown"]
