"""Aggregating detection runs: the table, curves and paired test follow the task's values (mAP,
AP50, ...) read from the cells, not classification's accuracy."""

import csv
import json

from experiments import aggregate as agg

MAP = {("pretrained", 0): 0.42, ("pretrained", 1): 0.45, ("scratch", 0): 0.20, ("scratch", 1): 0.24}


def fabricate_detection(root):
    cells = []
    for (strategy, seed), value in MAP.items():
        name = f"seed={seed},strategy={strategy}"
        cells.append({"name": name, "overrides": {"seed": seed, "strategy": strategy}})
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(
            json.dumps({"seed": seed, "data": {"eval_split": "validation"}})
        )
        records = [
            {"step": 5, "split": "validation", "mAP": value - 0.1, "loss": 9.0},
            {"step": 10, "split": "validation", "mAP": value, "loss": 7.0},
        ]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        results = {
            split: {
                "mAP": value,
                "AP50": value + 0.3,
                "AP75": value - 0.1,
                "AR100": 0.5,
                "AP/tree": value,
                "loss": 7.0,
                "box_loss": 1.0,
                "examples": 10,
            }
            for split in ("validation", "test")
        }
        summary = {
            "plan": "finetune",
            "steps": 10,
            "train_seconds_this_run": 5.0,
            "results": results,
        }
        (folder / "summary.json").write_text(json.dumps(summary))
    (root / "sweep.json").write_text(
        json.dumps({"cells": cells, "keys": ["seed", "strategy"], "sweep": "detection"})
    )


def test_detection_cells_aggregate_by_their_own_metrics(tmp_path):
    fabricate_detection(tmp_path)
    result = agg.aggregate(tmp_path, group_by=["strategy"], over="seed", metric="test_mAP")
    with open(tmp_path / "aggregate.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"test_mAP", "test_AP50", "test_AP75", "test_AR100", "test_loss"} <= set(rows[0])
    assert not any("accuracy" in k or "AP/" in k or "box_loss" in k for k in rows[0])
    table = (tmp_path / "aggregate.md").read_text()
    assert "test mAP" in table and "0.4350" in table  # pretrained's mean over its 2 seeds
    assert result["files"]["curves"].is_file()


def test_paired_test_on_map(tmp_path):
    from experiments.aggregate.significance import compare

    fabricate_detection(tmp_path)
    agg.aggregate(tmp_path, group_by=["strategy"], over="seed", metric="test_mAP")
    with open(tmp_path / "aggregate.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["test_mAP"] = float(row["test_mAP"])
    (comparison,) = compare(rows, ["strategy"], "seed", "test_mAP", ("strategy", "pretrained"))
    assert list(comparison["paired"]) == ["0", "1"]
    assert abs(comparison["mean_value"] - comparison["reference_mean"] - (0.22 - 0.435)) < 1e-9
