"""What each cell reports at its selected step (config.selection, tlx.selection): which step, the
wall time and the training compute it took to get there, and whether the run stopped early.

summary.json says `last_step` (total_steps, or where the run stopped early), `selected_step` (the
step whose results it reports) and `selection` ({"metric": None, ...} when selection is off). A
run from before selection existed has none of them: its selected and last step are its `steps`.

The columns (SELECTION_COLUMNS) appear in aggregate.csv and the table only when some cell of the
study selected on validation, so studies without selection keep the files they published:

- selected_step: the step whose results the row reports (the last step when selection is off);
- seconds_to_selected: `elapsed_seconds` of the eval split's record at that step in
  metrics.jsonl (wall time since train() began, evaluations included; the later record when a
  resumed run evaluated the step again);
- last_step: the step the run ended at; stopped_early: whether that was before total_steps.

FLOPS_COLUMN, flops_to_selected, appears when some cell's summary records its training compute
(`flops_to_step` says how it is read); with --time_to thresholds also flops_to_<accuracy>.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.aggregate.cells import CellData, eval_split, time_to

SELECTION_COLUMNS = ("selected_step", "seconds_to_selected", "last_step", "stopped_early")
FLOPS_COLUMN = "flops_to_selected"


def selects(cell: CellData) -> bool:
    """The cell's run selected its reported step on validation (config.selection.metric set)."""
    selection = (cell.summary or {}).get("selection")
    return isinstance(selection, Mapping) and selection.get("metric") is not None


def has_flops(cell: CellData) -> bool:
    summary = cell.summary or {}
    return summary.get("flops") is not None or summary.get("flops_per_step") is not None


def last_step(summary: Mapping) -> int | None:
    step = summary.get("last_step", summary.get("steps"))
    return None if step is None else int(step)


def selected_step(summary: Mapping) -> int | None:
    """The step whose results the summary holds: its last step when selection is off, or the run
    predates it."""
    step = summary.get("selected_step")
    return last_step(summary) if step is None else int(step)


def stopped_early(summary: Mapping) -> bool:
    """The run stopped before total_steps (`steps`) for want of improvement; a patience running
    out at the last step is no early stop."""
    at = (summary.get("selection") or {}).get("stopped_early_at")
    total = summary.get("steps")
    return at is not None and (total is None or int(at) < int(total))


def seconds_to_step(cell: CellData, step: int | None) -> Any:
    """`elapsed_seconds` of the eval split's record at `step` (the last such record: a resumed run
    that evaluated the step again selected on that one); '' if there is none."""
    return _eval_record_value(cell, step, "elapsed_seconds", "")


def _eval_record_value(cell: CellData, step: int | None, key: str, missing: Any) -> Any:
    selection = (cell.summary or {}).get("selection") or {}
    split = selection.get("split") or eval_split(cell)
    found: Any = missing
    for record in cell.metrics:
        if record.get("split") == split and record.get("step") == step:
            found = record.get(key, missing)
    return found


def flops_at(cell: CellData, step: int) -> float | None:
    """Training FLOPs by `step`: what tlx.trainer records (the eval record's `train_flops`, or
    `summary["flops"]["total"]` at the last step), else the per-stage form of flops_to_step."""
    summary = cell.summary or {}
    counted = _eval_record_value(cell, step, "train_flops", None)
    if counted is not None:
        return float(counted)
    flops = summary.get("flops")
    if isinstance(flops, Mapping) and "per_step" not in flops:
        return flops.get("total") if step == last_step(summary) else None
    return flops_to_step(summary, step)


def flops_to_step(summary: Mapping, step: int) -> float | None:
    """Training FLOPs of steps 0 .. `step` - 1 (the `step` steps taken by the time the run reached
    `step`), from what summary.json records, None where it records nothing:

        summary["flops"] = {"per_step": {stage_index: flops, ...}, "stage_starts": [0, s1, ...]}

    `per_step[i]`: the FLOPs of one train step of plan stage i (forward and backward; JSON keys
    are strings, "0", "1", ...; a plain number for every stage alike); `stage_starts[i]`: the
    step stage i begins at (the plan's boundaries: step s belongs to the last stage starting at or
    before s). `summary["flops_per_step"]`, a number, is shorthand for one stage. Only training
    steps count: neither evaluations nor the pretraining a transferred model started from."""
    flops = summary.get("flops")
    if flops is None:
        if summary.get("flops_per_step") is None:
            return None
        flops = {"per_step": summary["flops_per_step"]}
    if not isinstance(flops, Mapping) or "per_step" not in flops:
        raise ValueError(f'summary["flops"] is {flops!r}: expected {{"per_step", "stage_starts"}}')
    per_step = flops["per_step"]
    if not isinstance(per_step, Mapping):
        return float(per_step) * step
    starts = [int(s) for s in flops.get("stage_starts") or [0]]
    if starts != sorted(starts) or len(starts) != len(set(starts)):
        raise ValueError(f'summary["flops"]["stage_starts"] is not increasing: {starts}')
    per_stage = {int(k): float(v) for k, v in per_step.items()}
    total = 0.0
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else step
        taken = min(end, step) - (0 if index == 0 else start)
        if taken <= 0:
            continue
        if index not in per_stage:
            raise ValueError(
                f'summary["flops"]["per_step"] has no stage {index} (steps {start}..{end - 1})'
            )
        total += per_stage[index] * taken
    return total


def selection_row(
    cell: CellData, columns: Sequence[str], thresholds: Sequence[float] = ()
) -> dict[str, Any]:
    """The cell's values of `columns` (selection_columns's), '' where it has none."""
    summary = cell.summary or {}
    selected, last = selected_step(summary), last_step(summary)
    values: dict[str, Any] = {
        "selected_step": selected,
        "seconds_to_selected": seconds_to_step(cell, selected),
        "last_step": last,
        "stopped_early": stopped_early(summary) if summary else None,
    }
    if FLOPS_COLUMN in columns:
        values[FLOPS_COLUMN] = None if selected is None else flops_at(cell, selected)
    for threshold in thresholds:  # compute to an accuracy, where the run reached it
        column = f"flops_to_{threshold:g}"
        if column in columns:
            step = time_to(cell, threshold)[1]
            values[column] = None if step == "" else flops_at(cell, int(step))
    return {c: "" if values.get(c) is None else values[c] for c in columns}


def selection_columns(cells: Sequence[CellData], thresholds: Sequence[float] = ()) -> list[str]:
    """The columns this study adds: none unless some cell selected on validation or recorded its
    training compute."""
    columns = list(SELECTION_COLUMNS) if any(selects(c) for c in cells) else []
    if any(has_flops(c) for c in cells):
        columns += [FLOPS_COLUMN, *(f"flops_to_{t:g}" for t in thresholds)]
    return columns


def selection_note(cells: Sequence[CellData], metrics: Sequence[str]) -> list[str]:
    """The table's footnote on selection: how the cells selected, and what the times mean."""
    if "selected_step" not in metrics:
        return []
    ways = collections.Counter(_way(c) for c in cells if c.status == "finished")
    lines = [
        "",
        "Each row reports its cells at their selected step (config.selection), chosen on "
        "validation; a run stops early after `patience` evaluations without improvement. "
        "seconds to selected is the wall time from the start of training to that step's "
        "evaluation (evaluations included; for a resumed cell, from the start of the run that "
        "evaluated it): with selection it is the honest time to train for each arm, every arm "
        "having had the chance to improve until it stopped. seconds/steps to an accuracy "
        "(--time_to) time the first evaluation reaching it.",
        "",
    ]
    lines += [f"- {n} cell{'s' * (n != 1)}: {way}" for way, n in ways.items()]
    return lines


def _way(cell: CellData) -> str:
    selection = (cell.summary or {}).get("selection") or {}
    if selection.get("metric") is None:
        return "no selection (the last step)"
    return (
        f"{selection.get('split', '')} {selection['metric']} ({selection.get('mode', '')}), "
        f"patience {selection.get('patience', 0)}, min_delta {selection.get('min_delta', 0.0):g}"
    )
