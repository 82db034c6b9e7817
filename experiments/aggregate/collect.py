"""aggregate(): a sweep's folder, or a study's records file, to aggregate.csv, aggregate.md and the
plots."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.aggregate.cells import (
    COST_COLUMNS,
    CellData,
    cell_row,
    load_cells,
    result_metrics,
    splits_of,
)
from experiments.aggregate.plots import plot_against, plot_bars, plot_curves
from experiments.aggregate.records import load_records
from experiments.aggregate.selected import selection_columns, selection_row
from experiments.aggregate.table import group_rows, markdown
from experiments.jsonio import read_json


def aggregate(
    root: str | Path,
    group_by: Sequence[str] | None = None,
    over: str = "seed",
    metric: str = "test_accuracy",
    time_to_accuracy: Sequence[float] = (),
    x_axis: str | None = None,
    records: str | Path | None = None,
    rows_from: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Write aggregate.csv / .md, learning_curves.png, bars.png (and against_<x_axis>.png) in
    `root`; return what they show, with the files written under "files".

    The cells are read from the sweep's folder `root`, or with `records` from that records file
    (experiments.aggregate.records; `root` then only receives the files). `rows_from`: other
    studies (sweep folders or records files) whose cells join the table as more rows, e.g. a
    classical baseline's sweep beside the neural arms (see joined_cells)."""
    root = Path(root)
    if records is None:
        described, cells = load_cells(root)
        sweep, workdir = read_json(root / "sweep.json"), str(root)
    else:
        header, described, cells = load_records(records)
        sweep, workdir = header.get("sweep"), header.get("workdir")
        root.mkdir(parents=True, exist_ok=True)
    keys = list(described.get("keys") or [])
    for source in rows_from:
        more_keys, more = joined_cells(source, {c.name for c in cells})
        keys += [k for k in more_keys if k not in keys]
        cells += more
    if group_by is None:
        group_by = [k for k in keys if k != over]
    keys = list(dict.fromkeys([*keys, *group_by, *([over] if over else [])]))
    splits, values = splits_of(cells), result_metrics(cells)
    rows = [cell_row(c, keys, splits, time_to_accuracy, values) for c in cells]
    selection = selection_columns(cells, time_to_accuracy)  # none without selection or FLOPs
    for row, cell in zip(rows, cells):
        row.update(selection_row(cell, selection, time_to_accuracy))
    columns = list(dict.fromkeys(k for r in rows for k in r)) or ["cell", "status"]
    with open(root / "aggregate.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    metrics = [
        *(f"{s}_{m}" for s in splits for m in values),
        "train_seconds",
        "examples_per_sec",
        *(f"{p}_to_{t:g}" for t in time_to_accuracy for p in ("seconds", "steps")),
    ]
    for cost in COST_COLUMNS:
        if any(r.get(cost) not in ("", None) for r in rows):
            metrics.append(cost)
    metrics += selection
    if metric not in metrics and splits:  # e.g. no test split, or a detector: its first value
        split = "test" if "test" in splits else splits[0]
        metric = f"{split}_{values[0]}"
    groups = group_rows(rows, group_by, metrics)
    md = markdown(groups, rows, group_by, over, metrics, cells)
    (root / "aggregate.md").write_text(md)
    plot_curves(cells, rows, group_by, root / "learning_curves.png", values[0])
    plot_bars(groups if metric in metrics else [], metric, root / "bars.png")
    files = {
        "csv": root / "aggregate.csv",
        "md": root / "aggregate.md",
        "curves": root / "learning_curves.png",
        "bars": root / "bars.png",
    }
    if x_axis:
        # A swept key, or a cost column: a parameter-efficient study's accuracy against what
        # each method trains (one point per group, its seeds' mean and spread).
        costs = [c for c in COST_COLUMNS if c in metrics]
        if x_axis not in keys and x_axis not in costs:
            raise ValueError(
                f"--x_axis={x_axis!r} is neither a swept key, a --group_by key nor a cost "
                f"column of these cells; choose one of {[*keys, *costs]}."
            )
        files["against"] = root / f"against_{x_axis}.png"
        plot_against(rows, group_by, x_axis, metric, files["against"])
    return {
        "root": root,
        "rows": rows,
        "groups": groups,
        "markdown": md,
        "metric": metric,
        "group_by": list(group_by),  # as the table groups the cells (e.g. for significance)
        "over": over,
        "files": files,
        "sweep_command": sweep_command(described, workdir),
        "cells": cells,
        "sweep": sweep,  # sweep.json as read (None without one): what publish records
        "workdir": workdir,  # the sweep's own folder, also for cells read from records
        "rows_from": [str(s) for s in rows_from],
    }


def joined_cells(source: str | Path, taken: set[str]) -> tuple[list[str], list[CellData]]:
    """(the swept keys, the cells) of another study joined to a table as more rows: a sweep's
    folder or a records file (a path ending in the records suffix). Each cell keeps its name,
    prefixed by the source's name where this table already has it; `source` marks it as joined.
    Its rows group by the same keys as the study's own: a joined study should set the grouping
    fields (e.g. `strategy`) in its config, as configs/*_classical.py do."""
    from experiments.aggregate.records import SUFFIX

    source = Path(source)
    if str(source).endswith(SUFFIX):
        _, described, cells = load_records(source)
        label = source.name[: -len(SUFFIX)]
    elif source.is_dir():
        described, cells = load_cells(source)
        label = source.name
    else:
        raise ValueError(
            f"--rows_from={source}: expected a sweep's folder or a records file (*{SUFFIX}); "
            f"{'it does not exist' if not source.exists() else 'it is neither'}."
        )
    for cell in cells:
        cell.source = str(source)
        if cell.name in taken:
            cell.name = f"{label}/{cell.name}"
    return list(described.get("keys") or []), cells


def sweep_command(described: dict, workdir: str | Path | None) -> str | None:
    """The experiments.sweep command that made the cells (from sweep.json), if one did."""
    if not described.get("config"):
        return None
    parts = ["python -m experiments.sweep", f"--config={described['config']}"]
    parts += [f"--workdir={workdir}"] if workdir else []
    parts += [f"--set={k}={v}" for k, v in (described.get("set") or {}).items()]
    parts += list(described.get("train_args") or [])
    return " ".join(parts)
