"""Collect a sweep's cells into a table, mean ± std over seeds, and plots.

    python -m experiments.aggregate --workdir=runs/sweep [--group_by=plan.name] [--over=seed]

Reads WORKDIR/sweep.json (written by experiments.sweep; without it, every subfolder holding a
summary.json or config.json is a cell) and each cell's summary.json, metrics.jsonl and
config.json. Writes, in WORKDIR:

- aggregate.csv: one row per cell: its overrides, status, final accuracy and loss of each
  evaluated split, train seconds (of the run that finished it), examples/s (mean of its train
  records) and peak memory (summary.json's peak_memory_bytes, blank where absent);
- aggregate.md: cells grouped by --group_by (default: every swept key but --over), each metric as
  mean ± std (sample std over the group's finished cells, n of them), then the missing cells;
- learning_curves.png: the evaluation split's accuracy against step, one line per cell, one colour
  per group; bars.png: mean --metric per group with std error bars.

With --x_axis=KEY (e.g. data.train_examples), also against_<KEY>.png: mean --metric ± std
against KEY's values, one line per group of the other --group_by keys (a log axis when the values
span 10x or more; data.train_examples=0, "all", is placed at the cell's real training-set size).

With --out=DIR/NAME the same table, CSV and plots are also written as DIR/NAME.md, NAME.csv,
NAME_curves.png, NAME_bars.png (and NAME_against_<KEY>.png), the Markdown headed by the command
that made it, the date, the machine and the commit: what experiments/results/ keeps. The finished
cells' records (summary.json, metrics.jsonl, config.json) and sweep.json go to DIR/NAME_cells/:
`python -m experiments.aggregate --workdir=DIR/NAME_cells` redoes the table from the repository
alone, and experiments.restore_cells puts them back into a fresh workdir to resume the sweep.

Cells without summary.json are listed as missing (not an error). Cells finished by a resumed run
are named under the table: their train seconds cover the last run only.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import app, flags

from tlx import cli

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


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return records
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a killed run
    return records


def load_cells(root: str | Path) -> tuple[dict, list[CellData]]:
    """(sweep.json or a stand-in, the cells in its order)."""
    root = Path(root)
    described = _read_json(root / "sweep.json")
    if described is None:
        names = sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir() and ((p / "summary.json").exists() or (p / "config.json").exists())
        )
        described = {"keys": [], "cells": [{"name": n, "overrides": {}} for n in names]}
    cells = []
    for entry in described.get("cells", []):
        folder = root / entry["name"]
        summary = _read_json(folder / "summary.json")
        expected = entry.get("total_steps")
        if summary is None:
            status = "missing"
        elif expected is not None and int(summary.get("steps", -1)) != int(expected):
            status = "incomplete"
        else:
            status = "finished"
        cells.append(
            CellData(
                entry["name"],
                dict(entry.get("overrides", {})),
                status,
                summary,
                _read_jsonl(folder / "metrics.jsonl"),
                _read_json(folder / "config.json"),
                expected,
            )
        )
    return described, cells


def splits_of(cells: Sequence[CellData]) -> list[str]:
    found = {s for c in cells if c.summary for s in c.summary.get("results", {})}
    return [s for s in SPLIT_ORDER if s in found] + sorted(found - set(SPLIT_ORDER))


def time_to(cell: CellData, threshold: float) -> tuple[Any, Any]:
    """(seconds since the run began, step) of the first evaluation whose accuracy reached
    `threshold`, from the cell's metrics.jsonl (its eval split); ('', '') if it never did."""
    split = _eval_split(cell)
    for record in cell.metrics:
        if record.get("split") == split and float(record.get("accuracy", -1)) >= threshold:
            return record.get("elapsed_seconds", ""), record.get("step", "")
    return "", ""


def cell_row(
    cell: CellData, keys: Sequence[str], splits: Sequence[str], thresholds: Sequence[float] = ()
) -> dict[str, Any]:
    row: dict[str, Any] = {"cell": cell.name, "status": cell.status}
    for key in keys:
        value = cell.value(key)
        row[key] = "" if value is None else value
    summary = cell.summary or {}
    row["steps"] = summary.get("steps", "")
    results = summary.get("results", {})
    for split in splits:
        for metric in ("accuracy", "loss"):
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
    row["resumed_from_step"] = summary.get("resumed_from_step", "")
    row["train_examples"] = summary.get("train_examples", "")  # distinct labelled examples
    row["machine"] = summary.get("machine", "")  # timings compare only within one machine
    for threshold in thresholds:  # time to accuracy: the transfer-learning speed claim
        row[f"seconds_to_{threshold:g}"], row[f"steps_to_{threshold:g}"] = time_to(cell, threshold)
    return row


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), n) of the finite values."""
    values = [float(v) for v in values if v != "" and v is not None and math.isfinite(float(v))]
    if not values:
        return math.nan, math.nan, 0
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, len(values)


def _label(key_values: Sequence[tuple[str, Any]]) -> str:
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
                "label": _label(list(zip(group_by, values))),
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
    """Decimals shown for a metric: accuracies and losses 4, times and rates 1, counts 0."""
    if metric == "peak_memory_bytes" or metric.startswith("steps_to"):
        return 0
    if metric in ("examples_per_sec", "train_seconds") or metric.startswith("seconds_to"):
        return 1
    return 4


def markdown(groups, rows, group_by, over, metrics, cells) -> str:
    titles = {
        "examples_per_sec": "examples/s",
        "train_seconds": "train s",
        "peak_memory_bytes": "peak memory (MiB)",
    }
    lines = [
        f"Mean ± sample std over `{over}` (n finished cells per group).",
        "",
        "| "
        + " | ".join([*group_by, "n", *(titles.get(m, m.replace("_", " ")) for m in metrics)])
        + " |",
        "|" + "---|" * (len(group_by) + 1 + len(metrics)),
    ]
    scale = {"peak_memory_bytes": 2.0**-20}  # shown in MiB (the CSV keeps bytes)
    for g in groups:
        stats = {
            m: (g[m][0] * scale.get(m, 1), g[m][1] * scale.get(m, 1), g[m][2]) for m in metrics
        }
        cols = [
            *(str(g["keys"][k]) for k in group_by),
            str(g["n"]),
            *(fmt(stats[m], metric_digits(m)) for m in metrics),
        ]
        lines.append("| " + " | ".join(cols) + " |")
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


def _eval_split(cell: CellData) -> str:
    data = (cell.config or {}).get("data", {})
    return data.get("eval_split", "validation") if isinstance(data, dict) else "validation"


def group_curves(cells, rows, group_by) -> tuple[dict[str, dict[int, list[float]]], set[str]]:
    """{group label: {step: [each cell's eval accuracy]}} and the eval splits seen. A resumed cell
    that logged a step twice counts once, with its latest value."""
    by_name = {r["cell"]: r for r in rows}
    curves: dict[str, dict[int, list[float]]] = {}
    splits = set()
    for cell in cells:
        split = _eval_split(cell)
        points = {
            int(r["step"]): float(r["accuracy"])
            for r in cell.metrics
            if r.get("split") == split and "accuracy" in r
        }
        if not points:
            continue
        splits.add(split)
        by_step = curves.setdefault(_label([(k, by_name[cell.name][k]) for k in group_by]), {})
        for step, accuracy in points.items():
            by_step.setdefault(step, []).append(accuracy)
    return curves, splits


def plot_curves(cells, rows, group_by, path: Path) -> None:
    """One line per group: the mean eval accuracy over its cells at each step, ± std shaded (a
    30-cell sweep drawn a line per cell is unreadable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves, split_names = group_curves(cells, rows, group_by)
    colors = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, (label, by_step) in enumerate(curves.items()):
        steps = sorted(by_step)
        stats = [mean_std(by_step[s]) for s in steps]
        means = [m for m, _, _ in stats]
        n = max(count for _, _, count in stats)
        color = colors(i % colors.N)
        ax.plot(steps, means, marker="o", markersize=3, color=color, label=f"{label} (n={n})")
        if n > 1:
            low, high = ([m + sign * d for m, d, _ in stats] for sign in (-1, 1))
            ax.fill_between(steps, low, high, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("step")
    ax.set_ylabel(f"{' / '.join(sorted(split_names)) or 'validation'} accuracy")
    ax.set_title("Learning curves: mean ± std over each group's cells")
    if curves:  # outside the axes: the curves fill them
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no evaluation records yet", ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_bars(groups, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in groups if g[metric][2] > 0]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(groups) + 2), 4.5))
    if groups:
        x = range(len(groups))
        means = [g[metric][0] for g in groups]
        stds = [g[metric][1] for g in groups]
        ax.bar(x, means, yerr=stds, capsize=5, color="tab:blue", alpha=0.8)
        # values only (the key is the axis title when there is one), slanted so they never overlap
        names = [", ".join(map(str, g["keys"].values())) or g["label"] for g in groups]
        ax.set_xticks(
            list(x),
            [f"{name} (n={g['n']})" for name, g in zip(names, groups)],
            fontsize=8,
            rotation=25,
            ha="right",
        )
        ax.set_xlabel(", ".join(groups[0]["keys"]))
        low = min(m - s for m, s in zip(means, stds))
        high = max(m + s for m, s in zip(means, stds))
        if "accuracy" in metric and low > 0.2:
            ax.set_ylim(max(0.0, low - 0.1 * (high - low + 0.05)), min(1.0, high + 0.05))
    else:
        ax.text(0.5, 0.5, "no finished cells", ha="center", transform=ax.transAxes)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"Mean {metric.replace('_', ' ')} ± std per group")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def x_value(row: dict, key: str) -> float | None:
    """The row's numeric `key`; data.train_examples=0 ("all") is the run's real training size."""
    value = row.get(key, "")
    if key == "data.train_examples" and value in (0, "0") and row.get("train_examples"):
        value = row["train_examples"]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def plot_against(rows, group_by, x_key: str, metric: str, path: Path) -> None:
    """Mean `metric` ± std against `x_key`, one line per group of the other group_by keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    line_keys = [k for k in group_by if k != x_key]
    lines: dict[str, dict[float, list[float]]] = {}
    for row in rows:
        x, y = x_value(row, x_key), row.get(metric, "")
        if row["status"] != "finished" or x is None or y in ("", None):
            continue
        label = _label([(k, row.get(k, "")) for k in line_keys])
        lines.setdefault(label, {}).setdefault(x, []).append(float(y))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs_all = [x for points in lines.values() for x in points]
    for label, points in lines.items():
        xs = sorted(points)
        stats = [mean_std(points[x]) for x in xs]
        ax.errorbar(
            xs,
            [m for m, _, _ in stats],
            yerr=[sd for _, sd, _ in stats],
            marker="o",
            capsize=4,
            label=label,
        )
    if xs_all and min(xs_all) > 0 and max(xs_all) >= 10 * min(xs_all):
        ax.set_xscale("log")
    if not lines:
        ax.text(0.5, 0.5, "no finished cells", ha="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8)
    ax.set_xlabel(x_key)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"Mean {metric.replace('_', ' ')} ± std against {x_key}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def aggregate(
    root: str | Path,
    group_by: Sequence[str] | None = None,
    over: str = "seed",
    metric: str = "test_accuracy",
    time_to_accuracy: Sequence[float] = (),
    x_axis: str | None = None,
) -> dict[str, Any]:
    """Write aggregate.csv / .md, learning_curves.png, bars.png (and against_<x_axis>.png);
    return what they show, with the files written under "files"."""
    root = Path(root)
    described, cells = load_cells(root)
    keys = list(described.get("keys") or [])
    if group_by is None:
        group_by = [k for k in keys if k != over]
    keys = list(dict.fromkeys([*keys, *group_by, *([over] if over else [])]))
    splits = splits_of(cells)
    rows = [cell_row(c, keys, splits, time_to_accuracy) for c in cells]
    columns = list(dict.fromkeys(k for r in rows for k in r)) or ["cell", "status"]
    with open(root / "aggregate.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    metrics = [
        *(f"{s}_{m}" for s in splits for m in ("accuracy", "loss")),
        "train_seconds",
        "examples_per_sec",
        *(f"{p}_to_{t:g}" for t in time_to_accuracy for p in ("seconds", "steps")),
    ]
    if any(r.get("peak_memory_bytes") not in ("", None) for r in rows):
        metrics.append("peak_memory_bytes")
    if metric not in metrics and splits:  # e.g. no test split: the first one evaluated
        metric = f"{splits[0]}_accuracy"
    groups = group_rows(rows, group_by, metrics)
    md = markdown(groups, rows, group_by, over, metrics, cells)
    (root / "aggregate.md").write_text(md)
    plot_curves(cells, rows, group_by, root / "learning_curves.png")
    plot_bars(groups if metric in metrics else [], metric, root / "bars.png")
    files = {
        "csv": root / "aggregate.csv",
        "md": root / "aggregate.md",
        "curves": root / "learning_curves.png",
        "bars": root / "bars.png",
    }
    if x_axis:
        if x_axis not in keys:
            raise ValueError(
                f"--x_axis={x_axis!r} is neither a swept key nor a --group_by key; "
                f"choose one of {keys}."
            )
        files["against"] = root / f"against_{x_axis}.png"
        plot_against(rows, group_by, x_axis, metric, files["against"])
    return {
        "root": root,
        "rows": rows,
        "groups": groups,
        "markdown": md,
        "metric": metric,
        "files": files,
        "sweep_command": sweep_command(described, root),
    }


def sweep_command(described: dict, root: Path) -> str | None:
    """The experiments.sweep command that made the cells (from sweep.json), if one did."""
    if not described.get("config"):
        return None
    parts = ["python -m experiments.sweep", f"--config={described['config']}", f"--workdir={root}"]
    parts += [f"--set={k}={v}" for k, v in (described.get("set") or {}).items()]
    parts += list(described.get("train_args") or [])
    return " ".join(parts)


def publish(result: dict[str, Any], out: str | Path, command: str, machine: str) -> list[Path]:
    """Copy the tables and plots to OUT.md, OUT.csv, OUT_<plot>.png, the Markdown headed by the
    command, the date, the machine and the commit that made it."""
    import datetime
    import shutil

    from tlx.machine import git_commit

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    commit = git_commit()
    header = [
        f"# {out.name}",
        "",
        f"Made by `{command}` on {datetime.date.today().isoformat()} (aggregated at tlx commit "
        f"{commit}), on {machine}.",
        "",
    ]
    if result.get("sweep_command"):
        header += [f"Cells trained by `{result['sweep_command']}`.", ""]
    written = [out.with_suffix(".md"), out.with_suffix(".csv")]
    written[0].write_text("\n".join(header) + "\n" + result["markdown"])
    shutil.copyfile(result["files"]["csv"], written[1])
    for name in ("curves", "bars", "against"):
        if name in result["files"]:
            source = result["files"][name]
            suffix = source.stem if name == "against" else name  # against_<key>
            target = out.parent / f"{out.name}_{suffix}.png"
            shutil.copyfile(source, target)
            written.append(target)
    return written + publish_records(result, out)


def publish_records(result: dict[str, Any], out: Path) -> list[Path]:
    """Copy sweep.json and each finished cell's records to OUT_cells/, so the numbers can be
    re-aggregated, and the sweep resumed (experiments.restore_cells), from a fresh checkout.
    Adds and overwrites only: records of cells absent from this workdir are kept."""
    import shutil

    from experiments.restore_cells import RECORD_FILES, records_dir

    root, target = Path(result["root"]), records_dir(out)
    written: list[Path] = []
    if target.exists() and target.resolve() == root.resolve():  # re-aggregated from the records
        return written
    for name in (r["cell"] for r in result["rows"] if r["status"] == "finished"):
        for file in RECORD_FILES:
            if (root / name / file).exists():
                (target / name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / name / file, target / name / file)
                written.append(target / name / file)
    if written and (root / "sweep.json").exists():
        shutil.copyfile(root / "sweep.json", target / "sweep.json")
        written.append(target / "sweep.json")
    return written


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "A sweep's root folder (experiments.sweep --workdir).")
    flags.DEFINE_list(
        "group_by", None, "Keys whose values form the groups (default: swept keys but --over)."
    )
    flags.DEFINE_string("over", "seed", "The key averaged over within a group.")
    flags.DEFINE_string(
        "metric", "test_accuracy", "bars.png's metric: <split>_accuracy or <split>_loss."
    )
    flags.DEFINE_list(
        "time_to", [], "Validation accuracies to time: seconds and steps until each is reached."
    )
    flags.DEFINE_string(
        "x_axis", None, "Also plot --metric against this key (e.g. data.train_examples)."
    )
    flags.DEFINE_string(
        "out", None, "Also write DIR/NAME.md (headed by command and machine), .csv and plots."
    )
    flags.mark_flag_as_required("workdir")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if not Path(f.workdir).is_dir():
        raise SystemExit(f"experiments.aggregate: no folder {f.workdir}")
    thresholds = [float(t) for t in f.time_to]
    result = aggregate(f.workdir, f.group_by, f.over, f.metric, thresholds, f.x_axis)
    print(result["markdown"])
    if f.out:
        from experiments.restore_cells import records_dir
        from tlx.machine import machine

        command = "python -m experiments.aggregate " + " ".join(sys.argv[1:])
        written = publish(result, f.out, command, machine())
        records = records_dir(f.out)
        tables_and_plots = [p for p in written if records not in p.parents]
        for path in tables_and_plots:
            print(f"wrote {path}")
        if len(written) > len(tables_and_plots):
            print(f"wrote the finished cells' records to {records}/")
    finished = sum(r["status"] == "finished" for r in result["rows"])
    print(
        f"{finished} of {len(result['rows'])} cells finished; wrote aggregate.csv, aggregate.md, "
        f"learning_curves.png, bars.png in {f.workdir}"
    )


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="experiments.aggregate")
