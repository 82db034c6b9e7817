"""A sweep's plan: its cells (overrides, workdir, state), checked against the config before
anything runs, and WORKDIR/sweep.json."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.jsonio import read_json, write_atomic
from experiments.sweep.fields import apply, cell_name, coerce, flag_value, load_config
from experiments.sweep.grammar import SweepError, grid, parse_set, parse_sweep
from tlx import run_folder

SWEEP_FILE = "sweep.json"
LOG_FILE = "train.log"
LOCK_FILE = ".sweep.lock"


@dataclasses.dataclass
class Cell:
    name: str
    overrides: dict[str, Any]  # the sweep's keys, coerced to the config's types
    total_steps: int
    workdir: Path

    def state(self) -> str:
        """'finished' (summary.json at total_steps), 'partial' (started) or 'new'."""
        if run_folder.is_finished(self.workdir, self.total_steps):
            return "finished"
        if self.workdir.exists() and any(self.workdir.iterdir()):
            return "partial"
        return "new"


@dataclasses.dataclass
class Sweep:
    config_path: str
    sweep: str
    fixed: dict[str, Any]  # --set overrides, coerced
    cells: list[Cell]
    root: Path
    train_args: list[str] = dataclasses.field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys(k for c in self.cells for k in c.overrides))

    def command(self, cell: Cell) -> list[str]:
        overrides = {**self.fixed, **cell.overrides}
        return [
            sys.executable,
            "-m",
            "tlx.train",
            f"--config={self.config_path}",
            f"--workdir={cell.workdir}",
            *(f"--config.{k}={flag_value(v)}" for k, v in overrides.items()),
            *self.train_args,
        ]

    def describe(self) -> dict:
        return {
            "config": self.config_path,
            "sweep": self.sweep,
            "set": {k: _jsonable(v) for k, v in self.fixed.items()},
            "train_args": self.train_args,
            "keys": self.keys,
            "cells": [
                {
                    "name": c.name,
                    "overrides": {k: _jsonable(v) for k, v in c.overrides.items()},
                    "total_steps": c.total_steps,
                }
                for c in self.cells
            ],
        }


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def plan_sweep(
    config_path: str,
    sweep: str | None,
    root: str | Path,
    fixed: Sequence[str] = (),
    train_args: Sequence[str] = (),
    config=None,
) -> Sweep:
    """Parse and check everything (grammar, keys, types) before anything runs."""
    if config is None:
        config = load_config(config_path)
    if not sweep:
        sweep = config.get("sweep") if hasattr(config, "get") else None
        if not sweep:
            raise SweepError(
                f"no --sweep given and {config_path} declares no `sweep` field; e.g. "
                "--sweep='plan.name=[feature_extraction,progressive];seed=[0,1,2]'"
            )
    axes = parse_sweep(sweep)
    set_items = parse_set(fixed)
    swept = {k for axis in axes for k in axis.keys}
    both = swept.intersection(set_items)
    if both:
        raise SweepError(f"{sorted(both)} are both swept and --set; keep one")
    if "sweep" in swept or "sweep" in set_items:
        raise SweepError("'sweep' is the sweep itself, not something to sweep")
    fixed_values = {k: coerce(config, k, item) for k, item in set_items.items()}
    base = apply(config, fixed_values)
    root = Path(root)
    # A zipped group is named by its first key (its label, e.g. `strategy=ulmfit`), unless two
    # cells would then share a name; then every override names the cell.
    label_keys = [axis.keys[0] for axis in axes]
    rows = [{k: coerce(config, k, item) for k, item in items.items()} for items in grid(axes)]
    short = [cell_name({k: o[k] for k in label_keys}) for o in rows]
    use_short = len(set(short)) == len(short)
    cells, names = [], {}
    for overrides, short_name in zip(rows, short):
        cell_config = apply(base, overrides)
        name = short_name if use_short else cell_name(overrides)
        if name in names:
            raise SweepError(f"the sweep gives the cell {name!r} twice: {sweep!r}")
        names[name] = overrides
        total = int(cell_config.get("total_steps", 0)) if hasattr(cell_config, "get") else 0
        cells.append(Cell(name, overrides, total, root / name))
    return Sweep(config_path, sweep, fixed_values, cells, root, list(train_args))


def write_sweep_json(sweep: Sweep) -> Path:
    """WORKDIR/sweep.json: this grid, plus the cells of earlier sweeps into the same folder
    (so aggregate sees every cell). A different --config or --set there is refused."""
    path = sweep.root / SWEEP_FILE
    described = sweep.describe()
    previous = read_json(path)
    if previous is not None:
        differs = [
            f"{what}: {previous.get(what)!r} there, {described[what]!r} now"
            for what in ("config", "set")
            if previous.get(what) != described[what]
        ]
        if differs:
            raise SweepError(
                f"{path} was written by a sweep with a different " + "; ".join(differs) + ". "
                "Its cells would mix; use another --workdir (or delete sweep.json)."
            )
        names = {c["name"] for c in described["cells"]}
        earlier = [c for c in previous.get("cells", []) if c["name"] not in names]
        described["cells"] = earlier + described["cells"]
        described["keys"] = list(dict.fromkeys([*previous.get("keys", []), *described["keys"]]))
    sweep.root.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(described, indent=1))
    return path
