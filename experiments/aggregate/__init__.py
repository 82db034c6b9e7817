"""Collect a sweep's cells into a table, mean ± std over seeds, and plots.

    python -m experiments.aggregate --workdir=runs/sweep [--group_by=plan.name] [--over=seed]
    python -m experiments.aggregate --records=experiments/results/NAME_records.jsonl.gz [...]

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

With --rows_from=SOURCE[,SOURCE] (sweep folders or records files), the cells of other studies
join the table as more rows: grouped, plotted and compared like the study's own (e.g. a classical
baseline's sweep as a row of the neural study, configs/*_classical.py), never written to this
study's records file; the published header names them.

With --x_axis=KEY (e.g. data.train_examples), also against_<KEY>.png: mean --metric ± std
against KEY's values, one line per group of the other --group_by keys (a log axis when the values
span 10x or more; data.train_examples=0, "all", is placed at the cell's real training-set size).
KEY may also be a cost column the cells recorded (trainable_params, optimizer_state_bytes,
step_memory_bytes, peak_memory_bytes): a parameter-efficient study's accuracy against what each
method trains.

With --paired_against=FIELD=VALUE (a --group_by key), also each group's --metric against the
group with FIELD=VALUE and the same other keys, paired by --over: mean difference, 95% t interval,
paired t-test, "within noise" where the interval holds 0 (experiments.aggregate.significance);
printed, and with --out written as DIR/NAME_significance.md and .csv.

With --out=DIR/NAME the same table, CSV and plots are also written as DIR/NAME.md, NAME.csv,
NAME_curves.png, NAME_bars.png (and NAME_against_<KEY>.png), the Markdown headed by the command
that made it, the date, the machine and the commit: what experiments/results/ keeps. The finished
cells' records (config, summary, metrics.jsonl's curve) and sweep.json go to one file,
DIR/NAME_records.jsonl.gz (experiments.aggregate.records; merged with what it already holds):

    python -m experiments.aggregate --records=DIR/NAME_records.jsonl.gz [--group_by=...]

redoes the table from the repository alone (the aggregate.* files then go to --workdir, by default
a temporary folder; add --out to keep them), and experiments.restore_cells puts the cells back
into a fresh workdir to resume the sweep.

When some cell selected its reported step on validation (config.selection), aggregate.csv and the
table also hold selected_step, seconds_to_selected (wall time to that step's evaluation), last_step
and stopped_early (experiments.aggregate.selected): time to the selected step is then each arm's
time to train. When some summary records its training compute (summary["flops"], see
selected.flops_to_step), also flops_to_selected (and flops_to_<accuracy> with --time_to). Studies
with neither keep exactly the columns they had.

Cells without summary.json are listed as missing (not an error). Cells finished by a resumed run
are named under the table: their train seconds cover the last run only.
"""

from __future__ import annotations

from experiments.aggregate.cells import (
    SPLIT_ORDER,
    CellData,
    cell_row,
    eval_split,
    load_cells,
    splits_of,
    time_to,
)
from experiments.aggregate.collect import (
    aggregate,
    sweep_command,
)
from experiments.aggregate.command_line import (
    define_flags,
    main,
)
from experiments.aggregate.plots import (
    group_curves,
    plot_against,
    plot_bars,
    plot_curves,
    pyplot,
    x_value,
)
from experiments.aggregate.publishing import (
    publish,
    publish_records,
)
from experiments.aggregate.records import (
    RecordsError,
    cell_record,
    load_records,
    read_records,
    records_path,
    restore_records,
    write_records,
)
from experiments.aggregate.selected import (
    FLOPS_COLUMN,
    SELECTION_COLUMNS,
    flops_to_step,
    selection_columns,
    selection_row,
    selects,
)
from experiments.aggregate.table import (
    fmt,
    fmt_metric,
    group_label,
    group_rows,
    markdown,
    mean_std,
    metric_digits,
)

# The package's names, re-exported from its modules, as `experiments.aggregate.NAME`.
__all__ = [
    "SPLIT_ORDER",
    "CellData",
    "load_cells",
    "splits_of",
    "time_to",
    "cell_row",
    "eval_split",
    "mean_std",
    "group_label",
    "group_rows",
    "fmt",
    "fmt_metric",
    "metric_digits",
    "markdown",
    "pyplot",
    "group_curves",
    "plot_curves",
    "plot_bars",
    "x_value",
    "plot_against",
    "aggregate",
    "sweep_command",
    "publish",
    "publish_records",
    "RecordsError",
    "records_path",
    "read_records",
    "write_records",
    "cell_record",
    "load_records",
    "restore_records",
    "SELECTION_COLUMNS",
    "FLOPS_COLUMN",
    "selects",
    "flops_to_step",
    "selection_columns",
    "selection_row",
    "define_flags",
    "main",
]
