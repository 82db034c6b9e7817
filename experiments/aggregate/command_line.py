"""`python -m experiments.aggregate`'s flags and main (see experiments.aggregate)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from absl import app, flags

from experiments.aggregate.collect import aggregate
from experiments.aggregate.gap import gap_closed, publish_gap
from experiments.aggregate.publishing import publish
from experiments.aggregate.records import SUFFIX, RecordsError, read_records
from experiments.aggregate.significance import publish_significance, significance


def define_flags() -> None:
    flags.DEFINE_string(
        "workdir",
        None,
        "A sweep's root folder (experiments.sweep --workdir); with --records, where the "
        "aggregate.* files go (default: a temporary folder).",
    )
    flags.DEFINE_string(
        "records",
        None,
        f"A published study's records file (experiments/results/NAME{SUFFIX}, written by "
        "--out): aggregate its cells instead of a sweep's folder.",
    )
    flags.DEFINE_list(
        "rows_from",
        [],
        f"Other studies whose cells join the table as more rows (sweep folders or NAME{SUFFIX} "
        "files, comma-separated), e.g. the classical baseline beside the neural arms; grouped "
        "and compared like the study's own, never written to its records.",
    )
    flags.DEFINE_list(
        "group_by", None, "Keys whose values form the groups (default: swept keys but --over)."
    )
    flags.DEFINE_string("over", "seed", "The key averaged over within a group.")
    flags.DEFINE_string(
        "metric", "test_accuracy", "bars.png's metric: <split>_accuracy or <split>_loss."
    )
    flags.DEFINE_list(
        "time_to",
        [],
        "Validation accuracies to time: seconds and steps (and FLOPs, where summaries record "
        "them) until each is first reached. With config.selection the table also has the "
        "seconds to each cell's selected step, its time to train.",
    )
    flags.DEFINE_string(
        "x_axis",
        None,
        "Also plot --metric against this key (e.g. data.train_examples) or cost column "
        "(trainable_params, optimizer_state_bytes, step_memory_bytes, peak_memory_bytes).",
    )
    flags.DEFINE_string(
        "out",
        None,
        f"Also write DIR/NAME.md (headed by command and machine), .csv, plots and NAME{SUFFIX}.",
    )
    flags.DEFINE_string(
        "paired_against",
        None,
        "FIELD=VALUE (a --group_by key): each group's --metric against the group with "
        "FIELD=VALUE and the same other keys, paired by --over (95% t interval, paired t-test; "
        "experiments.aggregate.significance); with --out also NAME_significance.md and .csv.",
    )
    flags.DEFINE_string(
        "gap_closed",
        None,
        "FIELD=FROM:TO (a --group_by key): the share of the FROM -> TO gap in --metric each "
        "group closes, paired by --over, e.g. strategy=none:oracle for adaptation "
        "(experiments.aggregate.gap); with --out also NAME_gap.md and .csv.",
    )


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if f.records:
        try:
            read_records(f.records)
        except RecordsError as e:
            raise SystemExit(f"experiments.aggregate: --records={f.records}: {e}") from None
        if f.workdir:
            return _run(f, f.workdir)
        with tempfile.TemporaryDirectory(prefix="aggregate-") as scratch:
            return _run(f, scratch)
    if not f.workdir:
        raise app.UsageError(
            f"Pass --workdir=SWEEP_FOLDER, or --records=experiments/results/NAME{SUFFIX}."
        )
    if Path(f.workdir).is_file():
        raise SystemExit(
            f"experiments.aggregate: --workdir={f.workdir} is a file, not a sweep's folder; "
            f"a published records file (NAME{SUFFIX}) is read with --records={f.workdir}"
        )
    if not Path(f.workdir).is_dir():
        raise SystemExit(f"experiments.aggregate: no folder {f.workdir}")
    _run(f, f.workdir)


def _run(f, root: str) -> None:
    thresholds = [float(t) for t in f.time_to]
    try:
        result = aggregate(
            root, f.group_by, f.over, f.metric, thresholds, f.x_axis,
            records=f.records or None, rows_from=f.rows_from,
        )  # fmt: skip
    except (ValueError, RecordsError) as e:
        raise SystemExit(f"experiments.aggregate: {e}") from None
    print(result["markdown"])
    reports = []  # (the report, how to publish it)
    try:
        if f.paired_against:
            reports.append((significance(result, f.paired_against), publish_significance))
        if f.gap_closed:
            reports.append((gap_closed(result, f.gap_closed), publish_gap))
    except ValueError as e:
        raise SystemExit(f"experiments.aggregate: {e}") from None
    for report, _ in reports:
        print(report["markdown"])
    if f.out:
        from tlx.machine import machine

        command = "python -m experiments.aggregate " + " ".join(sys.argv[1:])
        for path in publish(result, f.out, command, machine()):
            print(f"wrote {path}")
        kept = " ".join(_without_out(sys.argv[1:]))  # the command less --out prints the same
        for report, publish_report in reports:
            for path in publish_report(report, f.out, kept):
                print(f"wrote {path}")
    finished = sum(r["status"] == "finished" for r in result["rows"])
    where = f.workdir or "a temporary folder (pass --workdir to keep them)"
    print(
        f"{finished} of {len(result['rows'])} cells finished; wrote aggregate.csv, aggregate.md, "
        f"learning_curves.png, bars.png in {where}"
    )


def _without_out(args: list[str]) -> list[str]:
    """The command's arguments less --out (its value is only where the files went)."""
    kept, skip = ["python -m experiments.aggregate"], False
    for arg in args:
        if skip or arg.startswith("--out="):
            skip = False
            continue
        skip = arg == "--out"
        kept += [] if skip else [arg]
    return kept
