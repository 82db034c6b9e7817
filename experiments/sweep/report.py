"""A sweep on the console: finished cells skipped, a progress bar per running cell, a line per
finished or failed one, then the table of results."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from experiments.sweep.plan import LOG_FILE, Cell, Sweep
from experiments.sweep.runner import Result, Runner, latest_step


def headline_metric(summary: dict | None) -> str:
    """The task's headline metric (``accuracy``, ``mAP`` for a detector): the first of a result's
    metrics, as every Task.summarize orders them. Not the selection metric, which is None for a
    run without model selection and may be the loss."""
    for result in ((summary or {}).get("results") or {}).values():
        if result:
            return next(iter(result))
    return "-"


def exit_reason(returncode: int | None) -> str:
    """A failed cell's exit, said so that a researcher knows what to do: a negative code is the
    signal that killed it, and SIGKILL nobody sent is most often the kernel's out-of-memory killer
    (a Faster R-CNN cell peaks at ~7.4 GiB; two of them beside a test run filled 24 GiB)."""
    if returncode is None or returncode >= 0:
        return f"exit {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"exit {returncode}"
    if -returncode == signal.SIGKILL:
        return (
            f"exit {returncode}, killed by {name}: if no one sent it, the kernel's out-of-memory "
            "killer (`dmesg | grep -i 'killed process'`); run fewer cells side by side "
            "(--workers) and rerun the sweep, which resumes the cell from its last checkpoint"
        )
    return f"exit {returncode}, killed by {name}"


def _score(summary: dict | None, split: str) -> str:
    try:
        return f"{float(summary['results'][split][headline_metric(summary)]):.4f}"
    except (TypeError, KeyError, ValueError):
        return "-"


def result_table(results: Sequence[Result]) -> str:
    rows = [("cell", "status", "steps", "metric", "test", "validation", "seconds")]
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
                headline_metric(summary),
                _score(summary, "test"),
                _score(summary, "validation"),
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
            summary = result.summary()
            console.print(
                f"{tag}: finished in {result.seconds:.0f} s, "
                f"test {headline_metric(summary)} {_score(summary, 'test')}"
            )
        elif result.status == "skipped":
            console.print(f"{tag}: finished by another sweep meanwhile, skipped")
        elif result.status == "busy":
            console.print(f"{tag}: another sweep is running this cell, left to it")
        else:
            console.print(
                f"{tag}: FAILED ({exit_reason(result.returncode)}) after {result.seconds:.0f} s; "
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
