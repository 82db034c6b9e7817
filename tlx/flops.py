"""Compute spent training: each compiled step's FLOPs, counted once per stage and batch shape.

XLA's cost analysis of a step's lowering for the CPU counts every matmul and convolution (an
accelerator's compiled program hands them to library calls the analysis cannot see into), so the
count is the same whichever device trains. :class:`FlopCounter` counts a step the first time its
(stage, batch shape) appears, adds it up step by step, and reports the seconds counting took, which
the trainer keeps out of its timings. A study then compares arms by compute to a target or to the
selected step, not only by wall time (issue: studies a reviewer accepts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np


def first_cost(analysis) -> dict:
    """cost_analysis() is a dict in recent jax, a list with one dict per program in older ones."""
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return dict(analysis or {})


def lowering_flops(step: Callable, args) -> float | None:
    """FLOPs of `step(*args)` (a jitted function) counted on its lowering for the CPU; None when
    it cannot be counted (not a jitted function, or a backend without cost analysis)."""
    import jax

    try:
        # Arrays by shape and dtype; Python scalars (a step number) as they are.
        shape_of = lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype)
        abstract = jax.tree_util.tree_map(lambda x: shape_of(x) if hasattr(x, "dtype") else x, args)
        lowered = step.trace(*abstract).lower(lowering_platforms=("cpu",))
        return first_cost(lowered.cost_analysis()).get("flops") or None
    except Exception:  # noqa: BLE001 - a count is a nicety; training goes on without it
        return None


def batch_signature(batch: Mapping) -> str:
    """A batch's shapes and dtypes (its compiled step's signature), as a short string."""
    return ";".join(f"{k}:{tuple(np.shape(v))}:{v.dtype}" for k, v in sorted(batch.items()))


class FlopCounter:
    """Training FLOPs so far (None once a step could not be counted: unknown, not zero)."""

    def __init__(self, total: float | None = 0.0):
        self.total = total
        self.seconds = 0.0  # spent counting: kept out of the run's timings
        self._per_step: dict[tuple[int, str], float | None] = {}

    def add(self, stage: int, batch: Mapping, count_step: Callable[[], float | None]) -> None:
        """One step of `stage` on `batch`; `count_step()` counts its FLOPs the first time."""
        key = (stage, batch_signature(batch))
        if key not in self._per_step:
            start = time.perf_counter()
            self._per_step[key] = count_step()
            self.seconds += time.perf_counter() - start
        flops = self._per_step[key]
        self.total = None if flops is None or self.total is None else self.total + flops
