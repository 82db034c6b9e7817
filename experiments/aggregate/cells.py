"""A sweep's cells as aggregate reads them (sweep.json, each cell's summary, metrics and config),
and each cell's row of aggregate.csv."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.jsonio import read_json
from tlx import run_folder

SPLIT_ORDER = ("test", "validation")


@dataclasses.dataclass
class CellData:
    name: str
    overrides: dict[str, Any]
    status: str  # finished | incomplete | missing
    summary: dict | None
    metrics: list[dict]
    config: dict | None
    expected_steps: int | None = None
    # "" for the study's own cells; for rows joined from another study (--rows_from), where
    # they came from: they are tabulated and compared, never published in this study's records
    source: str = ""

    def value(self, key: str) -> Any:
        """An override, else the cell's config.json value at the dotted `key` (None if absent)."""
        if key in self.overrides:
            return self.overrides[key]
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def load_cells(root: str | Path) -> tuple[dict, list[CellData]]:
    """(sweep.json or a stand-in, the cells in its order)."""
    root = Path(root)
    described = read_json(root / "sweep.json")
    if described is None:
        names = sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir()
            and ((p / run_folder.SUMMARY).exists() or (p / run_folder.CONFIG).exists())
        )
        described = {"keys": [], "cells": [{"name": n, "overrides": {}} for n in names]}
    cells = []
    for entry in described.get("cells", []):
        folder = root / entry["name"]
        config = run_folder.read_config(folder) if (folder / run_folder.CONFIG).exists() else None
        summary = run_folder.read_summary(folder)
        cells.append(sweep_cell(entry, summary, run_folder.read_metrics(folder), config))
    return described, cells


def sweep_cell(entry, summary, curve, config) -> CellData:
    """A sweep entry's cell from its records: missing without a summary, incomplete short of the
    entry's total_steps (the rule of tlx.run_folder.is_finished), else finished. A missing cell
    keeps no curve and no config: a run still going (or killed) reports nothing but its overrides
    until its summary is written, so a table made from a folder equals the one made from its
    records (which hold summaries), even while cells are running."""
    expected = entry.get("total_steps")
    if summary is None:
        status = "missing"
    elif expected is not None and int(summary.get("steps", -1)) != int(expected):
        status = "incomplete"
    else:
        status = "finished"
    overrides = dict(entry.get("overrides", {}))
    curve = list(curve) if summary is not None else []
    config = config if summary is not None else None
    return CellData(entry["name"], overrides, status, summary, curve, config, expected)


def splits_of(cells: Sequence[CellData]) -> list[str]:
    found = {s for c in cells if c.summary for s in c.summary.get("results", {})}
    return [s for s in SPLIT_ORDER if s in found] + sorted(found - set(SPLIT_ORDER))


CLASSIFICATION_METRICS = ("accuracy", "loss")
# What a plan trains, the optimizer state it keeps and its compiled step's memory need
# (summary.json's "trained"): the cost columns of a parameter-efficient study, tabulated where any
# cell has them (step memory only in runs since the trainer measured it).
TRAINED_COLUMNS = ("trainable_params", "optimizer_state_bytes", "step_memory_bytes")
COST_COLUMNS = ("peak_memory_bytes", *TRAINED_COLUMNS)  # tabulated, and --x_axis choices
# The order of the reported metrics, whatever order a summary or a records file stores them in
# (records keep sorted keys): each task's headline metrics, then its loss, then any others
# (e.g. an adaptation's "entropy") alphabetically.
METRIC_ORDER = ("accuracy", "balanced_accuracy", "mAP", "AP50", "AP75", "AR100", "loss")


def result_metrics(cells: Sequence[CellData]) -> list[str]:
    """The per-split values the table reports, in the task's order: what the cells' summaries
    hold (classification: accuracy, loss; detection: mAP, AP50, AP75, AR100, loss), without
    counts, per-class values ("AP/<class>") and loss components ("box_loss")."""
    found: dict[str, None] = {}
    for cell in cells:
        for values in (cell.summary or {}).get("results", {}).values():
            for key, value in values.items():
                reported = key != "examples" and "/" not in key and not key.endswith("_loss")
                if reported and isinstance(value, int | float):
                    found[key] = None
    if not found:
        return list(CLASSIFICATION_METRICS)
    known = [m for m in METRIC_ORDER if m in found]
    return known + sorted(m for m in found if m not in METRIC_ORDER)


def time_to(cell: CellData, threshold: float) -> tuple[Any, Any]:
    """(seconds since the run began, step) of the first evaluation whose accuracy reached
    `threshold`, from the cell's metrics.jsonl (its eval split); ('', '') if it never did."""
    split = eval_split(cell)
    for record in cell.metrics:
        if record.get("split") == split and float(record.get("accuracy", -1)) >= threshold:
            return record.get("elapsed_seconds", ""), record.get("step", "")
    return "", ""


def cell_row(
    cell: CellData,
    keys: Sequence[str],
    splits: Sequence[str],
    thresholds: Sequence[float] = (),
    metrics: Sequence[str] = CLASSIFICATION_METRICS,
) -> dict[str, Any]:
    row: dict[str, Any] = {"cell": cell.name, "status": cell.status}
    for key in keys:
        value = cell.value(key)
        row[key] = "" if value is None else value
    summary = cell.summary or {}
    row["steps"] = summary.get("steps", "")
    results = summary.get("results", {})
    for split in splits:
        for metric in metrics:
            value = results.get(split, {}).get(metric)
            row[f"{split}_{metric}"] = "" if value is None else float(value)
    row["train_seconds"] = summary.get("train_seconds_this_run", "")
    rates = [
        float(r["examples_per_sec"])
        for r in cell.metrics
        if r.get("split") == "train" and r.get("examples_per_sec") is not None
    ]
    if not rates and summary.get("restored_from"):  # restore_cells kept the published mean
        rates = [float(summary["examples_per_sec"])] if "examples_per_sec" in summary else []
    row["examples_per_sec"] = statistics.fmean(rates) if rates else ""
    peak = summary.get("peak_memory_bytes")
    row["peak_memory_bytes"] = "" if peak is None else peak
    if summary.get("trained"):  # the freeze audit's widest stage (tlx.trainer; absent before)
        for key in TRAINED_COLUMNS:  # as recorded: older runs have no step memory column
            if key in summary["trained"]:
                row[key] = summary["trained"][key]
    row["resumed_from_step"] = summary.get("resumed_from_step", "")
    row["train_examples"] = summary.get("train_examples", "")  # distinct labelled examples
    row["machine"] = summary.get("machine", "")  # timings compare only within one machine
    for threshold in thresholds:  # time to accuracy: the transfer-learning speed claim
        row[f"seconds_to_{threshold:g}"], row[f"steps_to_{threshold:g}"] = time_to(cell, threshold)
    return row


def eval_split(cell: CellData) -> str:
    data = (cell.config or {}).get("data", {})
    return data.get("eval_split", "validation") if isinstance(data, dict) else "validation"
