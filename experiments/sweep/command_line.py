"""`python -m experiments.sweep`'s flags and main (see experiments.sweep)."""

from __future__ import annotations

import shlex
import signal
import sys

from absl import app, flags

from experiments.sweep.grammar import SweepError
from experiments.sweep.plan import plan_sweep, write_sweep_json
from experiments.sweep.report import execute


def define_flags() -> None:
    flags.DEFINE_string("config", None, "Experiment config file, as tlx.train's --config.")
    flags.DEFINE_string("workdir", None, "Sweep root: one folder per cell and sweep.json.")
    flags.DEFINE_string(
        "sweep",
        None,
        "The grid: 'key=[v1,v2];key2=[a,b]' (Cartesian product), 'key=v', "
        "'(k1,k2)=[(a1,a2),(b1,b2)]' (zipped). Default: the config's `sweep` field.",
    )
    flags.DEFINE_multi_string(
        "set", [], "key=value for every cell (repeatable), e.g. --set=total_steps=200."
    )
    flags.DEFINE_string(
        "train_args", "", "More tlx.train flags for every cell, e.g. '--cpu_devices=8'."
    )
    flags.DEFINE_integer("workers", 1, "Cells trained at once (one process each).")
    flags.DEFINE_bool("dry_run", False, "Check the sweep and print each cell's command; run none.")
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        sweep = plan_sweep(f.config, f.sweep, f.workdir, f.set, shlex.split(f.train_args or ""))
        if not f.dry_run:
            write_sweep_json(sweep)
    except SweepError as e:
        raise SystemExit(f"experiments.sweep: {e}") from None
    print(
        f"sweep {sweep.sweep!r} of {sweep.config_path}: {len(sweep.cells)} cells in {sweep.root}"
        + (f", {f.workers} at a time" if f.workers > 1 else "")
    )
    if f.dry_run:
        for cell in sweep.cells:
            print(f"# {cell.name} ({cell.state()})\n{shlex.join(sweep.command(cell))}")
        return

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    try:
        results = execute(sweep, f.workers)
    except KeyboardInterrupt:
        print("experiments.sweep: interrupted; rerun the same command to resume.", file=sys.stderr)
        raise SystemExit(130) from None
    failed = [r for r in results if r.status == "failed"]
    if failed:
        names = ", ".join(r.cell.name for r in failed)
        raise SystemExit(
            f"experiments.sweep: {len(failed)} of {len(results)} cells failed: {names}"
        )
    print(f"aggregate with: python -m experiments.aggregate --workdir={sweep.root}")
