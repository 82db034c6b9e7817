"""Model selection on validation: the checkpoint a run reports, and early stopping.

With ``config.selection.metric`` set, every evaluation of ``data.eval_split`` is a candidate: an
improvement (by more than ``min_delta``, in the metric's direction) saves the step's weights to
``checkpoints_best/`` (one checkpoint, replaced at each improvement), and ``patience`` evaluations
without one end the run early. The run then reports every split at the selected step, so a test
score is never chosen by looking at the test split.

The best-so-far state is small and travels in the ``meta`` of every regular checkpoint, so a run
killed and resumed selects exactly what an unbroken run selects; best checkpoints newer than the
resumed step are set aside, because the resumed run redoes those evaluations.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from pathlib import Path

from tlx import run_folder
from tlx.spec import SelectionSpec


@dataclasses.dataclass
class SelectionState:
    """What the run has seen so far (a checkpoint's ``meta["selection"]``)."""

    best_step: int | None = None
    best_value: float | None = None
    evals_since_best: int = 0
    stopped_at: int | None = None  # the step the run stopped early at

    @classmethod
    def from_meta(cls, meta: Mapping | None) -> SelectionState:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (meta or {}).get("selection", {}).items() if k in fields})

    def as_meta(self) -> dict:
        return dataclasses.asdict(self)


class Selection:
    """Watches the evaluations of one split and says when to save the best and when to stop."""

    def __init__(self, spec: SelectionSpec, split: str, state: SelectionState | None = None):
        self.spec, self.split = spec, split
        self.state = state or SelectionState()

    @property
    def enabled(self) -> bool:
        return self.spec.enabled

    def improves(self, value: float) -> bool:
        best = self.state.best_value
        if best is None:
            return True
        delta = float(self.spec.min_delta)
        return value > best + delta if self.spec.direction == "max" else value < best - delta

    def observe(self, step: int, result: Mapping[str, float]) -> bool:
        """Records the evaluation at `step`; True when it is the new best (save it)."""
        if not self.enabled:
            return False
        value = float(result[self.spec.metric])
        if self.improves(value):
            self.state.best_step, self.state.best_value = step, value
            self.state.evals_since_best = 0
            return True
        self.state.evals_since_best += 1
        return False

    def should_stop(self) -> bool:
        patience = int(self.spec.patience)
        return bool(patience) and self.state.evals_since_best >= patience

    def summary(self, last_step: int) -> dict:
        """What summary.json says about the choice."""
        if not self.enabled:
            return {"metric": None, "selected_step": last_step}
        return {
            "metric": self.spec.metric,
            "split": self.split,
            "mode": self.spec.direction,
            "patience": int(self.spec.patience),
            "min_delta": float(self.spec.min_delta),
            "value": self.state.best_value,
            "selected_step": self.state.best_step,
            "stopped_early_at": self.state.stopped_at,
        }


def set_aside_future_best(workdir: Path, resumed_step: int) -> None:
    """Best checkpoints past the resumed step are redone by the resumed run: move them away (into
    checkpoints_damaged/, named as such) rather than let an old copy stand for a new one."""
    folder = Path(workdir) / run_folder.BEST_CHECKPOINTS
    if not folder.is_dir():
        return
    for step_dir in folder.iterdir():
        if step_dir.name.isdigit() and int(step_dir.name) > resumed_step:
            aside = Path(workdir) / run_folder.DAMAGED_CHECKPOINTS / f"best_{step_dir.name}_redone"
            aside.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(aside, ignore_errors=True)
            step_dir.rename(aside)
