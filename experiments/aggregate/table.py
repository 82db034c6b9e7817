"""Groups of finished cells, mean ± sample std per metric, and aggregate.md's table."""

from __future__ import annotations

import collections
import math
import statistics
from collections.abc import Sequence
from typing import Any

from experiments.aggregate.cells import CellData
from experiments.aggregate.selected import selection_note


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), n) of the finite values."""
    values = [float(v) for v in values if v != "" and v is not None and math.isfinite(float(v))]
    if not values:
        return math.nan, math.nan, 0
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, len(values)


def group_label(key_values: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key_values) or "all"


def group_rows(
    rows: Sequence[dict], group_by: Sequence[str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Finished rows grouped by the `group_by` columns: {label, keys, n, metric: (mean, std, n)}."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["status"] != "finished":
            continue
        groups.setdefault(tuple(str(row.get(k, "")) for k in group_by), []).append(row)
    out = []
    for values, members in groups.items():
        stats = {m: mean_std([r.get(m, "") for r in members]) for m in metrics}
        out.append(
            {
                "label": group_label(list(zip(group_by, values))),
                "keys": dict(zip(group_by, values)),
                "n": len(members),
                "cells": [r["cell"] for r in members],
                **stats,
            }
        )
    return out


def fmt(stat: tuple[float, float, int], digits: int = 4) -> str:
    mean, std, n = stat
    if n == 0:
        return "-"
    if n == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def metric_digits(metric: str) -> int:
    """Decimals shown for a metric: accuracies and losses 4, times and rates 1, counts 0 (and
    stopped_early, a fraction of the cells, 2)."""
    if metric in ("stopped_early", "optimizer_state_bytes"):  # a fraction; MiB that may be < 1
        return 2
    if (
        metric.startswith("flops_to")
        or metric in ("peak_memory_bytes", "selected_step", "last_step", "trainable_params")
        or metric.startswith("steps_to")
    ):
        return 0
    rates = ("examples_per_sec", "train_seconds", "step_memory_bytes")
    if metric in rates or metric.startswith("seconds_to"):
        return 1
    return 4


def fmt_metric(metric: str, stat: tuple[float, float, int]) -> str:
    """A table cell: fmt's mean ± std, FLOPs in 3 significant digits, and stopped_early as the
    number of cells that stopped early, of n."""
    mean, std, n = stat
    if n and metric == "stopped_early":
        return f"{round(mean * n)}/{n}"
    if n and metric.startswith("flops_to"):
        return f"{mean:.2e}" if n == 1 else f"{mean:.2e} ± {std:.1e}"
    return fmt(stat, metric_digits(metric))


def markdown(groups, rows, group_by, over, metrics, cells) -> str:
    titles = {
        "examples_per_sec": "examples/s",
        "train_seconds": "train s",
        "peak_memory_bytes": "peak memory (MiB)",
        "trainable_params": "trained params",
        "optimizer_state_bytes": "optimizer state (MiB)",
        "step_memory_bytes": "step memory (MiB)",
        "stopped_early": "stopped early (cells)",
    }
    lines = [
        f"Mean ± sample std over `{over}` (n finished cells per group).",
        "",
        "| "
        + " | ".join([*group_by, "n", *(titles.get(m, m.replace("_", " ")) for m in metrics)])
        + " |",
        "|" + "---|" * (len(group_by) + 1 + len(metrics)),
    ]
    # shown in MiB (the CSV keeps bytes)
    scale = {
        m: 2.0**-20 for m in ("peak_memory_bytes", "optimizer_state_bytes", "step_memory_bytes")
    }
    for g in groups:
        stats = {
            m: (g[m][0] * scale.get(m, 1), g[m][1] * scale.get(m, 1), g[m][2]) for m in metrics
        }
        cols = [
            *(str(g["keys"][k]) for k in group_by),
            str(g["n"]),
            *(fmt_metric(m, stats[m]) for m in metrics),
        ]
        lines.append("| " + " | ".join(cols) + " |")
    lines += selection_note(cells, metrics)
    resumed = [
        r["cell"]
        for r in rows
        if r["status"] == "finished" and r.get("resumed_from_step") not in ("", 0, None)
    ]
    if resumed:
        lines += ["", "Finished by a resumed run (train s and examples/s cover that run only):", ""]
        lines += [f"- {name}" for name in resumed]
    machines = collections.Counter(r["machine"] for r in rows if r["status"] == "finished")
    if len(machines) > 1 and "machine" not in group_by:
        lines += [
            "",
            "The cells ran on more than one machine: compare train s, examples/s and seconds to "
            "an accuracy within one (`--group_by=...,machine` splits them):",
            "",
        ]
        lines += [
            f"- {count} cell{'s' * (count != 1)}: {name or 'not recorded'}"
            for name, count in machines.items()
        ]
    restored = [c for c in cells if c.status == "finished" and _restored_from(c)]
    if restored:
        lines += ["", "Restored from an earlier published CSV (final numbers only, no curve):", ""]
        lines += [f"- {c.name}: {_restored_from(c)}" for c in restored]
    missing = [c for c in cells if c.status != "finished"]
    if missing:
        lines += ["", f"Not finished ({len(missing)}):", ""]
        lines += [f"- {c.name}: {c.status}" for c in missing]
    return "\n".join(lines) + "\n"


def _restored_from(cell: CellData) -> str:
    return str((cell.summary or {}).get("restored_from") or "")
