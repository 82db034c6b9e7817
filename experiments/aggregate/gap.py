"""The share of a gap each group closes, paired by seed: how far an adaptation method moves a
model from where it starts (the source-only row) towards where labels would take it (the target
oracle).

`python -m experiments.aggregate ... --gap_closed=FIELD=FROM:TO` groups the finished cells as the
table does (--group_by) and, for each group other than FROM and TO, finds the FROM and TO groups
with the same other --group_by keys (e.g. --group_by=adapt.target,strategy
--gap_closed=strategy=none:oracle: each method against source-only and the oracle of its target).
Per --over value (seed) that all three have: share = (metric - FROM's) / (TO's - FROM's), 0 where
the method stays at FROM, 1 where it reaches TO, below 0 where it makes things worse. The table
gives the shares' mean and sample std, each seed's share, and the share of the means over the same
seeds, (mean - FROM's mean) / (TO's mean - FROM's mean), which a table of means implies. A seed
whose FROM and TO are equal has no gap and is left out, with the reason, as are seeds missing from
any of the three groups.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.aggregate.significance import publish_markdown, seed_order, values_by_seed
from experiments.aggregate.table import group_label, group_rows, metric_digits

NO_GAP = 1e-12  # |TO - FROM| at or below this: no gap to close on that seed


def parse_gap(spec: str, group_by: Sequence[str]) -> tuple[str, str, str]:
    """'FIELD=FROM:TO' as (FIELD, FROM, TO); FIELD must be one of the --group_by keys."""
    field, sep, ends = spec.partition("=")
    start, colon, end = ends.partition(":")
    if not (sep and colon and field and start and end) or start == end:
        raise ValueError(
            f"--gap_closed={spec!r}: expected FIELD=FROM:TO with two different values, "
            "e.g. strategy=none:oracle"
        )
    if field not in group_by:
        raise ValueError(
            f"--gap_closed={spec}: {field!r} is not a --group_by key; choose one of "
            f"{list(group_by)}"
        )
    return field, start, end


def gap_shares(
    rows: Sequence[dict], group_by: Sequence[str], over: str, metric: str, gap: tuple[str, str, str]
) -> list[dict[str, Any]]:
    """One entry per group that is neither end: {label, keys, seeds, shares, mean, std,
    share_of_means, value_mean, from_mean, to_mean, left_out}."""
    field, start, end = gap
    if not any(metric in r for r in rows):
        raise ValueError(f"--metric={metric!r} is not a column of the table")
    groups = group_rows(rows, group_by, [metric])
    by_cell = {r["cell"]: r for r in rows}
    values = [g["keys"][field] for g in groups]
    for end_value in (start, end):
        if end_value not in values:
            raise ValueError(
                f"--gap_closed: no finished group has {field}={end_value}; its values are "
                f"{sorted(set(values))}"
            )

    def others(g) -> tuple:
        return tuple((k, v) for k, v in g["keys"].items() if k != field)

    ends = {
        (value, others(g)): g for g in groups for value in (start, end) if g["keys"][field] == value
    }
    out = []
    for g in groups:
        if g["keys"][field] in (start, end):
            continue
        ours, problems = values_by_seed(g, by_cell, over, metric)
        sides = {}
        for value in (start, end):
            group = ends.get((value, others(g)))
            name = group_label([(k, value if k == field else g["keys"][k]) for k in group_by])
            if group is None:
                problems.setdefault("*", f"no finished group {name}")
                sides[value] = {}
                continue
            found, why = values_by_seed(group, by_cell, over, metric)
            for seed in why:
                problems.setdefault(seed, why[seed])
            for seed in ours.keys() - found.keys():
                problems.setdefault(seed, f"{over}={seed}: not in {name}")
            sides[value] = found
        low, high = sides[start], sides[end]
        seeds = []
        for seed in sorted(ours.keys() & low.keys() & high.keys(), key=seed_order):
            if abs(high[seed] - low[seed]) <= NO_GAP:
                problems.setdefault(seed, f"{over}={seed}: {field}={start} and {end} are equal")
            elif seed not in problems:
                seeds.append(seed)
        shares = [(ours[s] - low[s]) / (high[s] - low[s]) for s in seeds]
        value_mean, from_mean, to_mean = (_mean_over(side, seeds) for side in (ours, low, high))
        out.append(
            {
                "label": g["label"],
                "keys": g["keys"],
                "seeds": seeds,
                "shares": shares,
                "mean": statistics.fmean(shares) if shares else math.nan,
                "std": statistics.stdev(shares) if len(shares) > 1 else math.nan,
                "share_of_means": (value_mean - from_mean) / (to_mean - from_mean)
                if seeds
                else math.nan,
                "value_mean": value_mean,
                "from_mean": from_mean,
                "to_mean": to_mean,
                "left_out": [problems[s] for s in sorted(problems, key=seed_order)],
            }
        )
    return out


def _mean_over(values: dict[str, float], seeds: Sequence[str]) -> float:
    return statistics.fmean(values[s] for s in seeds) if seeds else math.nan


def _pct(x: float) -> str:
    if math.isnan(x):
        return "-"
    text = f"{100 * x:.0f}%"
    return "0%" if text == "-0%" else text  # a rounding residue is not a loss


def _num(x: float, digits: int) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def markdown(entries, group_by, over, metric, gap) -> str:
    field, start, end = gap
    digits = max(metric_digits(metric), 1)
    name = metric.replace("_", " ")
    within = [k for k in group_by if k != field]
    where = f" with the same {', '.join(f'`{k}`' for k in within)}" if within else ""
    lines = [
        f"The share of the `{field}={start}` -> `{field}={end}` gap in {name} each group closes"
        f"{where}, per `{over}`: (value - {start}) / ({end} - {start}); 0% stays at {start}, "
        f"100% reaches {end}, below 0 is worse than {start}. Mean ± sample std of the per-"
        f"`{over}` shares; share of means: the same ratio of the three means over those `{over}`s.",
        "",
        "| "
        + " | ".join(
            [*group_by, f"n {over}s", name, start, end, "share closed", "share std"]
            + [f"each {over}", "share of means"]
        )
        + " |",
        "|" + "---|" * (len(group_by) + 8),
    ]
    for e in entries:
        each = ", ".join(f"{s}: {_pct(x)}" for s, x in zip(e["seeds"], e["shares"], strict=True))
        cols = [
            *(str(e["keys"][k]) for k in group_by),
            str(len(e["seeds"])),
            _num(e["value_mean"], digits),
            _num(e["from_mean"], digits),
            _num(e["to_mean"], digits),
            _pct(e["mean"]),
            _pct(e["std"]),
            each or "-",
            _pct(e["share_of_means"]),
        ]
        lines.append("| " + " | ".join(cols) + " |")
    left = [(e["label"], why) for e in entries for why in e["left_out"]]
    if left:
        lines += ["", f"Left out (not in the numbers above; {len(left)}):", ""]
        lines += [f"- {label}: {why}" for label, why in left]
    else:
        lines += ["", f"Every finished cell had both ends on its `{over}`: none left out."]
    return "\n".join(lines) + "\n"


def write_csv(entries, path: str | Path, group_by, metric, gap) -> Path:
    """One row per group, shares as fractions at full precision; `left_out` joined by '; '."""
    field, start, end = gap
    fields = [*group_by, "metric", "from", "to", "seeds", "shares", "mean_share", "std_share"]
    fields += ["share_of_means", "mean", "from_mean", "to_mean", "left_out"]
    path = Path(path)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for e in entries:
            number = {k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in e.items()}
            writer.writerow(
                {
                    **{k: e["keys"][k] for k in group_by},
                    "metric": metric,
                    "from": f"{field}={start}",
                    "to": f"{field}={end}",
                    "seeds": " ".join(e["seeds"]),
                    "shares": " ".join(repr(x) for x in e["shares"]),
                    "mean_share": number["mean"],
                    "std_share": number["std"],
                    "share_of_means": number["share_of_means"],
                    "mean": number["value_mean"],
                    "from_mean": number["from_mean"],
                    "to_mean": number["to_mean"],
                    "left_out": "; ".join(e["left_out"]),
                }
            )
    return path


def gap_closed(result: dict[str, Any], spec: str) -> dict[str, Any]:
    """The shares for aggregate()'s result and their Markdown table: {entries, markdown,
    group_by, over, metric, gap}."""
    group_by, over, metric = list(result["group_by"]), result["over"], result["metric"]
    gap = parse_gap(spec, group_by)
    entries = gap_shares(result["rows"], group_by, over, metric, gap)
    return {
        "entries": entries,
        "markdown": markdown(entries, group_by, over, metric, gap),
        "group_by": group_by,
        "over": over,
        "metric": metric,
        "gap": gap,
    }


def publish_gap(report: dict[str, Any], out: str | Path, command: str) -> list[Path]:
    """OUT_gap.md (headed by the command, the date and the commit) and OUT_gap.csv."""
    md = publish_markdown(report["markdown"], out, "gap", command)
    rows = (report["entries"], md.with_suffix(".csv"), report["group_by"], report["metric"])
    return [md, write_csv(*rows, report["gap"])]
