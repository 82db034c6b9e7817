"""Compute and memory spent training: each compiled step's FLOPs and XLA memory need, counted once
per stage and batch shape.

XLA's cost analysis of a step's lowering for the CPU counts every matmul and convolution (an
accelerator's compiled program hands them to library calls the analysis cannot see into), so the
count is the same whichever device trains. :class:`FlopCounter` counts a step the first time its
(stage, batch shape) appears, adds it up step by step, and reports the seconds counting took, which
the trainer keeps out of its timings. A study then compares arms by compute to a target or to the
selected step, not only by wall time (issue: studies a reviewer accepts).

The memory need (:func:`step_memory_bytes`) is XLA's own account of the compiled step: its
arguments, outputs and temporaries, less the donated buffers it reuses. It is what a training
method costs in memory (parameters, gradients, optimizer state, activations), without what the
process's peak RSS also holds: compilation, input pipelines, evaluation. A parameter-efficient
study compares methods by it (issue 25: "LoRA at a lower peak memory").
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


def compiled_step_bytes(compiled) -> int | None:
    """XLA's memory need for a compiled program: arguments + outputs + temporaries, less the
    donated arguments' buffers its outputs reuse (aliasing); None where the backend cannot say."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def step_memory_bytes(step: Callable, args) -> int | None:
    """The memory need of `step(*args)` (a jitted function that has already run on these
    arguments). It is traced on the real arguments, deleted donated ones included (their shapes
    and shardings survive): the lowering is then jit's cached one, and so is its compilation, so
    this costs a trace and a cache lookup. Abstract shapes without shardings would compile anew.
    None when it cannot be measured."""
    try:
        return compiled_step_bytes(step.trace(*args).lower().compile())
    except Exception:  # noqa: BLE001 - a measurement is a nicety; training goes on without it
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
        self.step_memory: dict[int, int] = {}  # per stage, its largest compiled step's need

    def add(
        self,
        stage: int,
        batch: Mapping,
        count_step: Callable[[], float | None],
        measure_memory: Callable[[], int | None] | None = None,
    ) -> int | None:
        """One step of `stage` on `batch`; the first time its shape appears, `count_step()`
        counts its FLOPs and `measure_memory()` (if given) its memory need. Returns the stage's
        step memory when this step raised it (for the stage's audit), else None."""
        key = (stage, batch_signature(batch))
        raised = None
        if key not in self._per_step:
            start = time.perf_counter()
            self._per_step[key] = count_step()
            memory = measure_memory() if measure_memory is not None else None
            if memory is not None and memory > self.step_memory.get(stage, 0):
                self.step_memory[stage] = raised = memory
            self.seconds += time.perf_counter() - start
        flops = self._per_step[key]
        self.total = None if flops is None or self.total is None else self.total + flops
        return raised
