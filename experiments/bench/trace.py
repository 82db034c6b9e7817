"""A few traced steps of a cell (`--profile_dir`): a jax.profiler trace to read in TensorBoard /
XProf, and from it the time the device was busy against the time the steps took, so that a
host-bound cell (the device idle between small kernels, waiting on Python or the input) shows as
such.

Busy time is the union of the intervals in which the device ran anything: on a GPU the kernels
and copies on its streams (the "Stream ..." lines of each /device plane); on a CPU, where XLA's
"device" is the host, the XLA ops on the PjRt CPU client's and its Eigen pool's threads, less
their waits. Overlapping work (two streams, several threads) counts once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

# Host-plane events that are waits or markers, not work.
IDLE_EVENT_MARKERS = ("Await", "wait for", "ThreadpoolListener", "end: ")
CPU_WORK_LINES = ("tf_XLAPjRtCpuClient", "tf_XLAEigen")


def merged_length(intervals: Iterable[tuple[float, float]]) -> float:
    """Total length of the union of [start, end) intervals."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total


def busy_intervals(profile) -> list[tuple[float, float]]:
    """(start, end) in ns of the device's work in a jax.profiler.ProfileData."""
    devices = [p for p in profile.planes if p.name.startswith("/device:")]
    intervals = []
    if devices:
        for plane in devices:
            for line in plane.lines:
                if line.name.startswith("Stream"):
                    intervals += [(e.start_ns, e.start_ns + e.duration_ns) for e in line.events]
        return intervals
    for plane in profile.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith(CPU_WORK_LINES):
                continue
            for e in line.events:
                if e.duration_ns > 0 and not any(m in e.name for m in IDLE_EVENT_MARKERS):
                    intervals.append((e.start_ns, e.start_ns + e.duration_ns))
    return intervals


def newest_trace(directory: Path) -> Path:
    traces = sorted(directory.rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    if not traces:
        raise FileNotFoundError(f"jax.profiler wrote no *.xplane.pb under {directory}")
    return traces[-1]


def trace_steps(run_step, batches, steps: int, directory: Path) -> dict:
    """`steps` more steps under jax.profiler.trace(directory); their wall time, the device's
    busy time within it and the ratio."""
    import jax
    from jax.profiler import ProfileData

    directory.mkdir(parents=True, exist_ok=True)
    with jax.profiler.trace(str(directory)):
        start = time.perf_counter()
        for _ in range(steps):
            run_step(next(batches))
        wall = time.perf_counter() - start
    path = newest_trace(directory)
    busy = merged_length(busy_intervals(ProfileData.from_file(str(path)))) / 1e9
    return {
        "trace": str(path),
        "traced_steps": steps,
        "traced_wall_s": wall,
        "device_busy_s": busy,
        "device_busy_fraction": busy / wall if wall > 0 else None,
    }
