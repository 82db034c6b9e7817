"""Metric accumulation and writers: ``metrics.jsonl`` (one JSON object a line) and TensorBoard."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from absl import logging

from tlx import run_folder


def process_max_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def peak_memory_bytes() -> int:
    """The accelerator allocator's high-water mark where it has one, else the process's max RSS."""
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    return int(stats.get("peak_bytes_in_use") or process_max_rss_bytes())


def add_sums(total: dict | None, sums: Mapping) -> dict:
    sums = {k: float(np.asarray(v)) for k, v in sums.items()}
    if total is None:
        return sums
    return {k: total[k] + sums[k] for k in total}


class MetricWriter:
    """Appends to ``workdir/metrics.jsonl`` and TensorBoard events in ``workdir/tensorboard``."""

    def __init__(self, workdir: str | Path, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(workdir) / run_folder.METRICS
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(Path(workdir) / run_folder.TENSORBOARD))

    def write(self, step: int, split: str, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in values.items():
            self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

    def truncate_after(self, step: int) -> None:
        """On resume, drop records past the checkpoint: those steps are about to be redone."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in run_folder.read_metrics(self.path.parent) if r["step"] <= step]
        # Atomically: a run killed here must not lose the records it keeps.
        run_folder.write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self._tb is not None:
            try:
                self._tb.close()
            except OSError as e:  # e.g. the disk is full: metrics.jsonl has every record anyway
                logging.warning("TensorBoard events in %s not flushed: %s", self.path.parent, e)
                _abandon(self._tb)
            self._tb = None


def _abandon(summary_writer) -> None:
    """Mark a tensorboardX writer whose flush failed as closed: its atexit hook would otherwise
    retry the flush at exit and print the same OSError as a traceback."""
    for file_writer in (getattr(summary_writer, "all_writers", None) or {}).values():
        event_writer = getattr(file_writer, "event_writer", None)
        if event_writer is None:
            continue
        worker = getattr(event_writer, "_worker", None)
        if worker is not None:
            with contextlib.suppress(Exception):
                worker.stop()
        event_writer._closed = True
