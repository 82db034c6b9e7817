"""The result table printed at the end of a run (rich), from a run's summary dict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def result_table(summary: dict, title: str = "Results") -> Table:
    table = Table(title=f"{title}: {summary['plan']} — {summary['model']}")
    for column in ("split", "accuracy", "loss", "examples"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, r in summary["results"].items():
        table.add_row(split, f"{r['accuracy']:.4f}", f"{r['loss']:.4f}", f"{r['examples']:,}")
    table.caption = (
        f"{summary['steps']} steps; training time this run {summary['train_seconds_this_run']:.0f} s"
        + (
            f" (resumed at step {summary['resumed_from_step']})"
            if summary["resumed_from_step"]
            else ""
        )
    )
    return table


def print_result_table(summary: dict, title: str = "Results") -> None:
    Console().print(result_table(summary, title))
