"""aggregate's plots: learning curves per group, bars per group, a metric against a key."""

from __future__ import annotations

from pathlib import Path

from experiments.aggregate.cells import eval_split
from experiments.aggregate.table import group_label, mean_std


def pyplot():
    """matplotlib.pyplot drawing to files only (the Agg backend), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def group_curves(
    cells, rows, group_by, value: str = "accuracy"
) -> tuple[dict[str, dict[int, list[float]]], set[str]]:
    """{group label: {step: [each cell's eval `value`]}} (accuracy; a detector's mAP) and the eval
    splits seen. A resumed cell that logged a step twice counts once, with its latest value."""
    by_name = {r["cell"]: r for r in rows}
    curves: dict[str, dict[int, list[float]]] = {}
    splits = set()
    for cell in cells:
        split = eval_split(cell)
        points = {
            int(r["step"]): float(r[value])
            for r in cell.metrics
            if r.get("split") == split and value in r
        }
        if not points:
            continue
        splits.add(split)
        by_step = curves.setdefault(group_label([(k, by_name[cell.name][k]) for k in group_by]), {})
        for step, accuracy in points.items():
            by_step.setdefault(step, []).append(accuracy)
    return curves, splits


def plot_curves(cells, rows, group_by, path: Path, value: str = "accuracy") -> None:
    """One line per group: the mean eval `value` over its cells at each step, ± std shaded (a
    30-cell sweep drawn a line per cell is unreadable)."""
    plt = pyplot()

    curves, split_names = group_curves(cells, rows, group_by, value)
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
    ax.set_ylabel(f"{' / '.join(sorted(split_names)) or 'validation'} {value}")
    ax.set_title("Learning curves: mean ± std over each group's cells")
    if curves:  # outside the axes: the curves fill them
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no evaluation records yet", ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_bars(groups, metric: str, path: Path) -> None:
    """Mean `metric` ± std per group; grouped by two keys (e.g. adapt.target, strategy), a
    cluster of bars per value of the first key, one colour per value of the second."""
    plt = pyplot()

    groups = [g for g in groups if g[metric][2] > 0]
    if groups and len(groups[0]["keys"]) == 2:
        plot_grouped_bars(groups, metric, path)
        return
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


def plot_grouped_bars(groups, metric: str, path: Path) -> None:
    plt = pyplot()

    outer_key, inner_key = list(groups[0]["keys"])
    outer = list(dict.fromkeys(str(g["keys"][outer_key]) for g in groups))
    inner = list(dict.fromkeys(str(g["keys"][inner_key]) for g in groups))
    width = 0.8 / len(inner)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(groups) + 3), 4.8))
    colors = plt.get_cmap("tab10" if len(inner) <= 10 else "tab20")
    for j, name in enumerate(inner):
        mine = {str(g["keys"][outer_key]): g for g in groups if str(g["keys"][inner_key]) == name}
        xs = [i + (j - (len(inner) - 1) / 2) * width for i, o in enumerate(outer) if o in mine]
        found = [mine[o] for o in outer if o in mine]
        ax.bar(
            xs,
            [g[metric][0] for g in found],
            width,
            yerr=[g[metric][1] for g in found],
            capsize=2,
            color=colors(j % colors.N),
            label=f"{name} (n={max(g['n'] for g in found)})",
        )
    ax.set_xticks(range(len(outer)), outer, fontsize=8, rotation=25, ha="right")
    ax.set_xlabel(outer_key)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"Mean {metric.replace('_', ' ')} ± std, per {outer_key} and {inner_key}")
    ax.legend(fontsize=7, title=inner_key, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
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
    plt = pyplot()

    line_keys = [k for k in group_by if k != x_key]
    lines: dict[str, dict[float, list[float]]] = {}
    for row in rows:
        x, y = x_value(row, x_key), row.get(metric, "")
        if row["status"] != "finished" or x is None or y in ("", None):
            continue
        label = group_label([(k, row.get(k, "")) for k in line_keys])
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
