"""The result table printed at the end of a run (rich), from a run's summary dict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def result_table(summary: dict, title: str = "Results") -> Table:
    table = Table(title=f"{title}: {summary['plan']} — {summary['model']}")
    results = summary["results"]
    # The task's values, in its order (classification: accuracy, loss, examples); per-class
    # values ("AP/<class>") and loss components ("box_loss") stay in summary.json.
    columns = [
        key
        for key in next(iter(results.values()), {})
        if "/" not in key and not key.endswith("_loss")
    ]
    table.add_column("split", justify="left")
    for column in columns:
        table.add_column(column, justify="right")
    for split, r in results.items():
        table.add_row(split, *(_cell(r[column]) for column in columns))
    table.caption = (
        f"{_steps(summary)}; training time this run {summary['train_seconds_this_run']:.0f} s"
        + (
            f" (resumed at step {summary['resumed_from_step']})"
            if summary["resumed_from_step"]
            else ""
        )
    )
    return table


def _steps(summary: dict) -> str:
    """'360 steps', or with model selection which step the results are from and why."""
    selection = summary.get("selection") or {}
    last = summary.get("last_step", summary["steps"])
    if not selection.get("metric"):
        return f"{last} steps"
    early = selection.get("stopped_early_at")
    ended = f"stopped early at {early}" if early and early < summary["steps"] else f"{last} steps"
    return (
        f"{ended}; results at step {summary['selected_step']}, the best {selection['split']} "
        f"{selection['metric']} ({selection['value']:.4f})"
    )


def _cell(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def print_result_table(summary: dict, title: str = "Results") -> None:
    Console().print(result_table(summary, title))
