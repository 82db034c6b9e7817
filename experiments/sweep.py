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

import dataclasses
import fcntl
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from absl import app, flags

from experiments.sweep_grid import (
    SweepError,
    apply,
    cell_name,
    coerce,
    flag_value,
    grid,
    load_config,
    parse_set,
    parse_sweep,
)
from tlx import cli

SWEEP_FILE = "sweep.json"
LOG_FILE = "train.log"
LOCK_FILE = ".sweep.lock"


# ---------------------------------------------------------------------------------------------
# The plan: cells, their state, sweep.json
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Cell:
    name: str
    overrides: dict[str, Any]  # the sweep's keys, coerced to the config's types
    total_steps: int
    workdir: Path

    def state(self) -> str:
        """'finished' (summary.json at total_steps), 'partial' (started) or 'new'."""
        summary = read_json(self.workdir / "summary.json")
        if summary is not None and int(summary.get("steps", -1)) == self.total_steps:
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


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


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
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(described, indent=1))
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    cell: Cell
    status: str  # finished | skipped | failed | busy | dry-run
    returncode: int | None = None
    seconds: float = 0.0
    log_tail: str = ""

    def summary(self) -> dict | None:
        return read_json(self.cell.workdir / "summary.json")


def tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def latest_step(workdir: Path) -> int:
    """The last step metrics.jsonl has reached (0 before the first log)."""
    text = tail(workdir / "metrics.jsonl", lines=20)
    step = 0
    for line in text.splitlines():
        try:
            step = max(step, int(json.loads(line).get("step", 0)))
        except (ValueError, AttributeError):
            continue
    return step


class Runner:
    """Runs cells as subprocesses, `workers` at a time; kills them all if interrupted."""

    def __init__(self, sweep: Sweep, workers: int = 1, env: Mapping[str, str] | None = None):
        self.sweep = sweep
        self.workers = max(1, workers)
        self.env = dict(env) if env is not None else None
        self.events: queue.Queue = queue.Queue()
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def run_cell(self, cell: Cell, command: list[str]) -> Result:
        if self._stopping:  # queued behind a cell that was stopped: leave no trace
            return Result(cell, "failed", returncode=-signal.SIGTERM)
        cell.workdir.mkdir(parents=True, exist_ok=True)
        lock = open(cell.workdir / LOCK_FILE, "w")  # noqa: SIM115 (held while the cell runs)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return Result(cell, "busy")
            if cell.state() == "finished":  # another sweep finished it meanwhile
                return Result(cell, "skipped")
            self.events.put(("start", cell))
            started = time.perf_counter()
            log_path = cell.workdir / LOG_FILE
            with open(log_path, "a") as log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"=== {stamp} experiments.sweep: {shlex.join(command)}\n")
                log.flush()
                with self._lock:
                    if self._stopping:
                        return Result(cell, "failed", returncode=-signal.SIGTERM)
                    proc = subprocess.Popen(
                        command, stdout=log, stderr=subprocess.STDOUT, env=self.env
                    )
                    self._procs.add(proc)
                try:
                    code = proc.wait()
                finally:
                    with self._lock:
                        self._procs.discard(proc)
            seconds = time.perf_counter() - started
            if code != 0:
                return Result(cell, "failed", code, seconds, tail(log_path))
            if cell.state() != "finished":
                return Result(
                    cell, "failed", code, seconds, "exited 0 without summary.json at total_steps"
                )
            return Result(cell, "finished", code, seconds)
        finally:
            lock.close()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            procs = list(self._procs)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def run(
        self,
        cells: Sequence[Cell],
        command: Callable[[Cell], list[str]] | None = None,
        report: Callable[[str, Cell, Result | None], None] | None = None,
        poll: Callable[[], None] | None = None,
    ) -> list[Result]:
        """Run `cells` (already known not to be finished); `report(event, cell, result)` is
        called from this thread on 'start' and 'done', `poll()` about once a second."""
        command = command or self.sweep.command
        report = report or (lambda *_: None)
        results = {}
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sweep")
        try:
            pending = {pool.submit(self.run_cell, c, command(c)): c for c in cells}
            while pending:
                done, _ = wait(list(pending), timeout=1.0, return_when=FIRST_COMPLETED)
                self._drain(report)
                for future in done:
                    cell = pending.pop(future)
                    results[cell.name] = future.result()
                    report("done", cell, results[cell.name])
                if poll:
                    poll()
            self._drain(report)
        except BaseException:
            self.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return [results[c.name] for c in cells]

    def _drain(self, report) -> None:
        while True:
            try:
                event, cell = self.events.get_nowait()
            except queue.Empty:
                return
            report(event, cell, None)


def _accuracy(summary: dict | None, split: str) -> str:
    try:
        return f"{float(summary['results'][split]['accuracy']):.4f}"
    except (TypeError, KeyError, ValueError):
        return "-"


def result_table(results: Sequence[Result]) -> str:
    rows = [("cell", "status", "steps", "test acc", "val acc", "seconds")]
    for r in results:
        summary = r.summary()
        status = r.status if r.returncode in (None, 0) else f"{r.status} (exit {r.returncode})"
        steps = str(summary.get("steps", "-")) if summary else "-"
        seconds = f"{r.seconds:.0f}" if r.seconds else "-"
        rows.append(
            (
                r.cell.name,
                status,
                steps,
                _accuracy(summary, "test"),
                _accuracy(summary, "validation"),
                seconds,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def execute(sweep: Sweep, workers: int = 1, env=None, command=None, out=None) -> list[Result]:
    """Skip finished cells, run the rest (a progress bar each on a terminal), print the table."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(file=out or sys.stdout, highlight=False, soft_wrap=True)
    total = len(sweep.cells)
    index = {c.name: i + 1 for i, c in enumerate(sweep.cells)}
    results: dict[str, Result] = {}
    todo = []
    for cell in sweep.cells:
        state = cell.state()
        if state == "finished":
            results[cell.name] = Result(cell, "skipped")
            console.print(f"[{index[cell.name]}/{total}] {cell.name}: finished already, skipped")
        else:
            todo.append(cell)
            if state == "partial":
                console.print(
                    f"[{index[cell.name]}/{total}] {cell.name}: unfinished, resumes in its workdir"
                )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    tasks = {}

    def report(event: str, cell: Cell, result: Result | None) -> None:
        tag = f"[{index[cell.name]}/{total}] {cell.name}"
        if event == "start":
            console.print(
                f"{tag}: started ({cell.total_steps} steps), log {cell.workdir / LOG_FILE}"
            )
            tasks[cell.name] = progress.add_task(
                cell.name, total=cell.total_steps, completed=latest_step(cell.workdir)
            )
            return
        if cell.name in tasks:
            progress.update(tasks[cell.name], completed=latest_step(cell.workdir))
            progress.stop_task(tasks.pop(cell.name))
        if result.status == "finished":
            acc = _accuracy(result.summary(), "test")
            console.print(f"{tag}: finished in {result.seconds:.0f} s, test accuracy {acc}")
        elif result.status == "skipped":
            console.print(f"{tag}: finished by another sweep meanwhile, skipped")
        elif result.status == "busy":
            console.print(f"{tag}: another sweep is running this cell, left to it")
        else:
            console.print(
                f"{tag}: FAILED (exit {result.returncode}) after {result.seconds:.0f} s; "
                f"the end of {cell.workdir / LOG_FILE}:\n{result.log_tail}"
            )

    def poll() -> None:
        for name, task in tasks.items():
            progress.update(task, completed=latest_step(sweep.root / name))

    runner = Runner(sweep, workers, env)
    with progress:
        for result in runner.run(todo, command, report, poll):
            results[result.cell.name] = result
    ordered = [results[c.name] for c in sweep.cells]
    console.print(result_table(ordered))
    return ordered


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


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


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="experiments.sweep")
