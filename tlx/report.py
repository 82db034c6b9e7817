"""The result table printed at the end of a run (rich), from a run's summary dict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def result_table(summary: dict, title: str = "Results") -> Table:
    table = Table(title=f"{title}: {summary['plan']} — {summary['model']}")
    results = summary["results"]
    # The task's values, in its order (classification: accuracy, loss, examples).
    columns = list(next(iter(results.values()), {}))
    table.add_column("split", justify="left")
    for column in columns:
        table.add_column(column, justify="right")
    for split, r in results.items():
        table.add_row(split, *(_cell(r[column]) for column in columns))
    table.caption = (
        f"{summary['steps']} steps; training time this run {summary['train_seconds_this_run']:.0f} s"
        + (
            f" (resumed at step {summary['resumed_from_step']})"
            if summary["resumed_from_step"]
            else ""
        )
    )
    return table


def _cell(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def print_result_table(summary: dict, title: str = "Results") -> None:
    Console().print(result_table(summary, title))
