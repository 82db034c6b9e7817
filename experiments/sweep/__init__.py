"""Run a grid of one experiment config, one `python -m tlx.train` process and workdir per cell.

    python -m experiments.sweep --config=configs/minilm_rt_progressive.py \
        --sweep='plan.name=[feature_extraction,progressive];seed=[0,1,2]' \
        --set=total_steps=200 --workdir=runs/sweep [--workers=2] [--dry_run]
    python -m experiments.aggregate --workdir=runs/sweep --group_by=plan.name --over=seed

The sweep grammar: entries separated by ';', each `key=[v1,v2,...]` (one axis of the Cartesian
product), `key=v` (one value) or a zipped group `(key1,key2)=[(a1,a2),(b1,b2)]` (the keys move
together). Keys are config paths (`plan.name`, `optim.learning_rate`); values are read as int,
float, bool (true/false) or string, then as the config field's own type; quote a value ('1e-3',
"a,b") to keep it a string, write a tuple as (48,64). Without --sweep, the config's own `sweep`
field (a string in the same grammar, big_vision style) is used.

Each cell trains in WORKDIR/<cell>, named from its overrides (`plan.name=progressive,seed=1`), its
output in WORKDIR/<cell>/train.log; WORKDIR/sweep.json lists the grid. Rerunning the same command
skips finished cells (a summary.json at the cell's total_steps) and resumes unfinished ones from
their latest checkpoint (tlx.train resumes in the same workdir). Every key is checked against the
config before anything runs; a failed cell is reported (exit code and the end of its log), the
others go on, and the sweep then exits non-zero.
"""

from __future__ import annotations

from experiments.jsonio import (
    read_json,
)
from experiments.sweep.command_line import (
    define_flags,
    main,
)
from experiments.sweep.fields import (
    NAME_LIMIT,
    apply,
    cell_name,
    coerce,
    flag_value,
    load_config,
)
from experiments.sweep.grammar import (
    Axis,
    Item,
    SweepError,
    grid,
    parse_item,
    parse_scalar,
    parse_set,
    parse_sweep,
    split_top,
)
from experiments.sweep.plan import (
    LOCK_FILE,
    LOG_FILE,
    SWEEP_FILE,
    Cell,
    Sweep,
    plan_sweep,
    write_sweep_json,
)
from experiments.sweep.report import (
    execute,
    result_table,
)
from experiments.sweep.runner import (
    Result,
    Runner,
    latest_step,
    tail,
)

# The package's names, re-exported from its modules, as `experiments.sweep.NAME`.
__all__ = [
    "SweepError",
    "Item",
    "Axis",
    "split_top",
    "parse_scalar",
    "parse_item",
    "parse_sweep",
    "grid",
    "parse_set",
    "NAME_LIMIT",
    "load_config",
    "coerce",
    "apply",
    "flag_value",
    "cell_name",
    "read_json",
    "SWEEP_FILE",
    "LOG_FILE",
    "LOCK_FILE",
    "Cell",
    "Sweep",
    "plan_sweep",
    "write_sweep_json",
    "Result",
    "tail",
    "latest_step",
    "Runner",
    "result_table",
    "execute",
    "define_flags",
    "main",
]
