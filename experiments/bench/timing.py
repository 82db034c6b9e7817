"""Timing train steps: warm-up, timed steps, and two frameworks in interleaved rounds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np


class StepTimer:
    """Times one framework's steps: warm-up, then timed steps in one or several calls (rounds
    interleaved with another framework's). The time of a step includes its blocking next(). A
    first step slower than `slow_step_s` ends the warm-up and leaves one timed step in all (a
    figure to within the noise, in a bounded time)."""

    def __init__(self, run_step: Callable[[dict], None], batches, slow_step_s=None):
        self.run_step, self.batches, self.slow_step_s = run_step, batches, slow_step_s
        self.first_step_s, self.warmup, self.slow = None, 0, False
        self.error: BaseException | None = None  # set by time_interleaved
        self.totals: list[float] = []
        self.waits: list[float] = []

    def warm(self, steps: int) -> None:
        for i in range(steps):
            start = time.perf_counter()
            self.run_step(next(self.batches))
            self.warmup += 1
            if i == 0 and self.first_step_s is None:
                self.first_step_s = time.perf_counter() - start
                if self.slow_step_s is not None and self.first_step_s > self.slow_step_s:
                    self.slow = True
                    return

    def rewarm(self, steps: int) -> None:
        """Untimed steps between timed ones (not for a slow framework: it has its one step)."""
        for _ in range(0 if self.slow else steps):
            self.run_step(next(self.batches))

    def timed(self, steps: int) -> None:
        if self.slow:
            steps = min(steps, 1 - len(self.totals))
        for _ in range(steps):
            start = time.perf_counter()
            batch = next(self.batches)
            got = time.perf_counter()
            self.run_step(batch)
            self.totals.append(time.perf_counter() - start)
            self.waits.append(got - start)

    def run(self, warmup: int, steps: int) -> StepTimer:
        """All of it at once: `warmup` steps, then `steps` timed ones."""
        self.warm(warmup)
        self.timed(steps)
        return self

    def result(self) -> dict:
        p10, median, p90 = np.percentile(self.totals, [10, 50, 90])
        return {
            "first_step_s": self.first_step_s,
            "step_median_s": float(median),
            "step_p10_s": float(p10),
            "step_p90_s": float(p90),
            "step_mean_s": statistics.fmean(self.totals),
            "input_wait_fraction": sum(self.waits) / sum(self.totals),
            "steps": len(self.totals),
            "warmup": self.warmup,
        }


def time_steps(
    run_step: Callable[[dict], None],
    batches,
    steps: int,
    warmup: int,
    slow_step_s: float | None = None,
) -> dict:
    """`warmup` steps, then `steps` timed ones (see StepTimer); `run_step` must return only once
    the step is done."""
    return StepTimer(run_step, batches, slow_step_s).run(warmup, steps).result()


def time_interleaved(timers: Sequence[StepTimer], steps: int, warmup: int, rounds: int) -> None:
    """Warm every timer, then `rounds` rounds of about steps/rounds timed steps each, in turn, the
    order reversed every other round (A B B A ...): a machine whose speed drifts over minutes
    then slows both alike, instead of whichever ran second. Each round after the first starts
    with an untimed step. A timer whose step raises keeps the exception in `.error` and is left
    out from then on; the others go on."""

    def attempt(timer: StepTimer, method: str, n: int) -> None:
        if timer.error is None:
            try:
                getattr(timer, method)(n)
            except Exception as exc:
                timer.error = exc

    for timer in timers:
        attempt(timer, "warm", warmup)
    for r in range(rounds):
        share = steps // rounds + (r < steps % rounds)  # `steps` in all
        for timer in timers if r % 2 == 0 else list(reversed(timers)):
            if r > 0 and len(timers) > 1:
                # One untimed step first: the other framework's threads spin on for a while
                # after its last step (OpenMP's and Eigen's wait policies) and would slow it.
                attempt(timer, "rewarm", 1)
            attempt(timer, "timed", share)


def add_throughput(result: dict, batch: int, tokens_per_example: int | None) -> dict:
    result["examples_per_s"] = batch / result["step_median_s"]
    result["tokens_per_s"] = (
        result["examples_per_s"] * tokens_per_example if tokens_per_example else None
    )
    return result
