"""`python -m experiments.aggregate`'s flags and main (see experiments.aggregate)."""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

from experiments.aggregate.collect import aggregate
from experiments.aggregate.publishing import publish


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
