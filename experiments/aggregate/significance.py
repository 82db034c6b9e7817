"""Differences between groups of cells, paired by seed, with a 95% confidence interval and a
paired t-test: which of a table's differences are within seed noise.

`python -m experiments.aggregate ... --paired_against=FIELD=VALUE` groups the finished cells as
the table does (--group_by) and compares each group with the reference group that has FIELD=VALUE
and the same values of the other --group_by keys (e.g. --group_by=strategy,data.train_examples
--paired_against=strategy=transfer: scratch against transfer at each label count). Cells are
paired by --over (the seed): the difference is the group's --metric minus the reference's on the
same seed. Over the n paired differences: their mean and sample std, a 95% interval from Student's
t with n-1 degrees of freedom, and the paired t-test's p (scipy.stats.ttest_rel). A difference is
"within noise" when its interval contains 0. A table makes many comparisons at once, so each p
is also adjusted by Holm's step-down method across the comparisons that have a test: "holds after
Holm" when the adjusted p is below 0.05 (a family-wise error of 5%). Seeds found on one side only,
or twice in a group, or without a value, are listed as left out; fewer than 2 pairs give no test,
and the note says why.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.aggregate.table import group_label, group_rows, metric_digits

CONFIDENCE = 0.95
NO_SPREAD = 1e-12  # differences alike to this (relative) precision: t is 0/0 or ±inf, no test
SMALL_N = 5  # fewer pairs than this: the note says the interval rests on few seeds
FAMILY_ALPHA = 0.05  # Holm: the chance of any false "holds" among a table's comparisons


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order; NaN (no test) stays NaN and does
    not count among the m comparisons. Sorted ascending, the k-th smallest (k from 0) becomes
    max over j <= k of min(1, (m - j) * p_j): monotone, and adjusted < alpha exactly where Holm's
    procedure rejects at family-wise level alpha."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(tested)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for j, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - j) * p))
        adjusted[i] = running
    return adjusted


def parse_reference(spec: str, group_by: Sequence[str]) -> tuple[str, str]:
    """'FIELD=VALUE' as (FIELD, VALUE); FIELD must be one of the --group_by keys."""
    field, sep, value = spec.partition("=")
    if not sep or not field or not value:
        raise ValueError(f"--paired_against={spec!r}: expected FIELD=VALUE, e.g. strategy=finetune")
    if field not in group_by:
        raise ValueError(
            f"--paired_against={spec}: {field!r} is not a --group_by key; choose one of "
            f"{list(group_by)}"
        )
    return field, value


def paired_stats(values: Sequence[float], reference: Sequence[float]) -> dict[str, Any]:
    """Statistics of values[i] - reference[i]: n, mean, std, the 95% t interval, t, p and
    within_noise (the interval contains 0; None without a test), with a note where n is small."""
    from scipy import stats

    differences = [a - b for a, b in zip(values, reference, strict=True)]
    n = len(differences)
    out: dict[str, Any] = {
        "n": n,
        "mean": statistics.fmean(differences) if n else math.nan,
        "std": statistics.stdev(differences) if n > 1 else math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "t": math.nan,
        "p": math.nan,
        "within_noise": None,
        "note": "",
    }
    if n < 2:
        out["note"] = (
            f"{'no pairs' if n == 0 else '1 pair'}: no test (a t interval needs 2 or more)"
        )
        return out
    if out["std"] <= NO_SPREAD * max(1.0, abs(out["mean"])):
        out["ci_low"] = out["ci_high"] = out["mean"]
        out["within_noise"] = abs(out["mean"]) <= NO_SPREAD  # the CI is the one point
        out["note"] = "every pair differs by the same amount: no spread, no t-test"
        return out
    sem = out["std"] / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sem
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    test = stats.ttest_rel(values, reference)
    out["t"], out["p"] = float(test.statistic), float(test.pvalue)
    out["within_noise"] = out["ci_low"] <= 0 <= out["ci_high"]
    if n < SMALL_N:
        out["note"] = f"small n ({n} pairs): a wide interval, assuming normal differences"
    return out


def seed_order(seed: str) -> tuple:
    try:
        return (0, float(seed), seed)
    except ValueError:
        return (1, 0.0, seed)


def values_by_seed(group, by_cell, over, metric) -> tuple[dict[str, float], dict[str, str]]:
    """({seed: the cell's metric}, {seed: why it cannot be paired}) for a group's finished cells."""
    found: dict[str, list[float | None]] = {}
    for name in group["cells"]:
        row = by_cell[name]
        value = row.get(metric, "")
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = None
        found.setdefault(str(row.get(over, "")), []).append(
            value if value is not None and math.isfinite(value) else None
        )
    values, problems = {}, {}
    for seed, seen in found.items():
        if len(seen) > 1:
            problems[seed] = f"{over}={seed}: {len(seen)} cells in {group['label']}, ambiguous pair"
        elif seen[0] is None:
            problems[seed] = f"{over}={seed}: no {metric} in {group['label']}"
        else:
            values[seed] = seen[0]
    return values, problems


def compare(
    rows: Sequence[dict],
    group_by: Sequence[str],
    over: str,
    metric: str,
    reference: tuple[str, str],
) -> list[dict[str, Any]]:
    """One comparison per group that is not the reference: {label, keys, reference (its label),
    paired (seeds), mean_value, reference_mean, left_out, **paired_stats}."""
    field, value = reference
    if not any(metric in r for r in rows):
        columns = [k for r in rows[:1] for k in r if k.endswith(("accuracy", "loss", "seconds"))]
        raise ValueError(f"--metric={metric!r} is not a column of the table; e.g. {columns}")
    groups = group_rows(rows, group_by, [metric])
    by_cell = {r["cell"]: r for r in rows}

    def others(g) -> tuple:
        return tuple((k, v) for k, v in g["keys"].items() if k != field)

    references = {others(g): g for g in groups if g["keys"][field] == value}
    if not references:
        values = sorted({g["keys"][field] for g in groups})
        raise ValueError(
            f"--paired_against={field}={value}: no finished group has {field}={value}; "
            f"its values are {values}"
        )
    out = []
    for g in groups:
        if g["keys"][field] == value:
            continue
        ref = references.get(others(g))
        ref_label = group_label([(k, ref["keys"][k]) for k in group_by]) if ref else ""
        ours, problems = values_by_seed(g, by_cell, over, metric)
        theirs, ref_problems = values_by_seed(ref, by_cell, over, metric) if ref else ({}, {})
        problems.update({s: why for s, why in ref_problems.items() if s not in problems})
        left_out = [problems[s] for s in sorted(problems, key=seed_order)]
        if ref is None:
            missing = group_label([(k, value if k == field else g["keys"][k]) for k in group_by])
            seeds = f"{over}={', '.join(sorted(ours, key=seed_order))}: " if ours else ""
            left_out.append(f"{seeds}no finished reference group {missing}")
        else:
            for seed in sorted((ours.keys() ^ theirs.keys()) - problems.keys(), key=seed_order):
                absent = ref_label if seed in ours else g["label"]
                left_out.append(f"{over}={seed}: not in {absent}")
        paired = sorted(ours.keys() & theirs.keys(), key=seed_order)
        a, b = [ours[s] for s in paired], [theirs[s] for s in paired]
        out.append(
            {
                "label": g["label"],
                "keys": g["keys"],
                "reference": ref_label,
                "paired": paired,
                "mean_value": statistics.fmean(a) if a else math.nan,
                "reference_mean": statistics.fmean(b) if b else math.nan,
                "left_out": left_out,
                **paired_stats(a, b),
            }
        )
    for c, adjusted in zip(out, holm_adjusted([c["p"] for c in out]), strict=True):
        c["p_holm"] = adjusted
        c["holds_after_holm"] = None if math.isnan(adjusted) else adjusted < FAMILY_ALPHA
    return out


def _num(x: float, digits: int) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def _p(p: float) -> str:
    return "-" if math.isnan(p) else f"{p:.2g}"


def _noise(c: dict) -> str:
    return {True: "yes", False: "no", None: "no test"}[c["within_noise"]]


def _holds(c: dict) -> str:
    return {True: "yes", False: "no", None: "-"}[c["holds_after_holm"]]


def markdown(comparisons, group_by, over, metric, reference) -> str:
    field, value = reference
    digits = max(metric_digits(metric), 1)
    within = [k for k in group_by if k != field]
    where = f" at each {', '.join(f'`{k}`' for k in within)}" if within else ""
    name = metric.replace("_", " ")
    lines = [
        f"Paired by `{over}`: each group's {name} minus that of `{field}={value}`{where} on the "
        f"same `{over}`. Δ: mean ± sample std of the n paired differences; {CONFIDENCE:.0%} CI: "
        f"Student's t with n-1 degrees of freedom; p: paired t-test (scipy.stats.ttest_rel). "
        f'"within noise": the CI contains 0 (uncorrected). p (Holm): adjusted by Holm\'s '
        f"step-down method across the {sum(not math.isnan(c['p']) for c in comparisons)} "
        f'comparisons with a test; "holds after Holm": adjusted p < {FAMILY_ALPHA:g}, the '
        f"difference stands with a family-wise error of {FAMILY_ALPHA:.0%}.",
        "",
        "| "
        + " | ".join(
            [*group_by, "n pairs", name, "reference", "Δ mean", "Δ std", "95% CI of Δ", "p"]
            + ["within noise", "p (Holm)", "holds after Holm", "note"]
        )
        + " |",
        "|" + "---|" * (len(group_by) + 11),
    ]
    for c in comparisons:
        ci = (
            "-"
            if math.isnan(c["ci_low"])
            else (f"[{c['ci_low']:+.{digits}f}, {c['ci_high']:+.{digits}f}]")
        )
        mean = "-" if math.isnan(c["mean"]) else f"{c['mean']:+.{digits}f}"
        cols = [
            *(str(c["keys"][k]) for k in group_by),
            str(c["n"]),
            _num(c["mean_value"], digits),
            _num(c["reference_mean"], digits),
            mean,
            _num(c["std"], digits),
            ci,
            _p(c["p"]),
            _noise(c),
            _p(c["p_holm"]),
            _holds(c),
            c["note"],
        ]
        lines.append("| " + " | ".join(cols) + " |")
    left = [(c["label"], s) for c in comparisons for s in c["left_out"]]
    if left:
        lines += ["", f"Left out, unpaired (not in the numbers above; {len(left)}):", ""]
        lines += [f"- {label}: {why}" for label, why in left]
    else:
        lines += ["", f"Every finished cell was paired by `{over}`: none left out."]
    return "\n".join(lines) + "\n"


def write_csv(comparisons, path: str | Path, group_by, metric) -> Path:
    """One row per comparison, numbers at full precision; `left_out` joined by '; '."""
    fields = [*group_by, "reference", "metric", "n_pairs", "paired", "mean", "reference_mean"]
    fields += ["mean_difference", "std_difference", "ci_low", "ci_high", "t", "p_value"]
    fields += ["within_noise", "p_holm", "holds_after_holm", "note", "left_out"]
    path = Path(path)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for c in comparisons:
            blank = {k: "" if isinstance(c[k], float) and math.isnan(c[k]) else c[k] for k in c}
            writer.writerow(
                {
                    **{k: c["keys"][k] for k in group_by},
                    "reference": c["reference"],
                    "metric": metric,
                    "n_pairs": c["n"],
                    "paired": " ".join(c["paired"]),
                    "mean": blank["mean_value"],
                    "reference_mean": blank["reference_mean"],
                    "mean_difference": blank["mean"],
                    "std_difference": blank["std"],
                    "ci_low": blank["ci_low"],
                    "ci_high": blank["ci_high"],
                    "t": blank["t"],
                    "p_value": blank["p"],
                    "within_noise": "" if c["within_noise"] is None else c["within_noise"],
                    "p_holm": blank["p_holm"],
                    "holds_after_holm": ""
                    if c["holds_after_holm"] is None
                    else c["holds_after_holm"],
                    "note": c["note"],
                    "left_out": "; ".join(c["left_out"]),
                }
            )
    return path


def significance(result: dict[str, Any], spec: str) -> dict[str, Any]:
    """The comparisons for aggregate()'s result (its groups, --over and metric), and their
    Markdown table: {comparisons, markdown, group_by, over, metric, reference}."""
    group_by, over, metric = list(result["group_by"]), result["over"], result["metric"]
    reference = parse_reference(spec, group_by)
    comparisons = compare(result["rows"], group_by, over, metric, reference)
    return {
        "comparisons": comparisons,
        "markdown": markdown(comparisons, group_by, over, metric, reference),
        "group_by": group_by,
        "over": over,
        "metric": metric,
        "reference": reference,
    }


def publish_significance(report: dict[str, Any], out: str | Path, command: str) -> list[Path]:
    """OUT_significance.md (headed by the command, the date and the commit) and .csv."""
    md = publish_markdown(report["markdown"], out, "significance", command)
    csv_path = write_csv(
        report["comparisons"], md.with_suffix(".csv"), report["group_by"], report["metric"]
    )
    return [md, csv_path]


def publish_markdown(markdown_text: str, out: str | Path, suffix: str, command: str) -> Path:
    """OUT_SUFFIX.md: the table headed by the command, the date and the commit."""
    import datetime

    from tlx.machine import git_commit

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = out.parent / f"{out.name}_{suffix}.md"
    header = [
        f"# {md.stem}",
        "",
        f"Made by `{command}` on {datetime.date.today().isoformat()} (tlx commit {git_commit()}); "
        f"the command prints this table, and with `--out=PREFIX` writes it as "
        f"PREFIX_{suffix}.md and .csv.",
        "",
    ]
    md.write_text("\n".join(header) + "\n" + markdown_text)
    return md
