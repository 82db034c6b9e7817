"""The benchmark's input: random batches in each framework's layout, fed from a host thread."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from experiments.bench.models import VOCAB_SIZE, is_text

if TYPE_CHECKING:
    from experiments.bench.config import BenchConfig


class PrefetchedBatches:
    """Host-side input as a training loop sees it: a daemon thread cycles through a few numpy
    batches made up front into a bounded queue, and the loop times its blocking next(). Making the
    batches up front keeps numpy's random generator out of the figure; what remains is the hand-over
    (and, in the step, the host-to-device copy)."""

    def __init__(self, make_batch: Callable[[int], dict], pool_size: int = 2, depth: int = 2):
        self._pool = [make_batch(seed) for seed in range(pool_size)]
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self):
        for batch in itertools.cycle(self._pool):
            while not self._stop.is_set():
                try:
                    self._queue.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set():
                return

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return self._queue.get()

    def close(self):
        self._stop.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def numpy_batch(model: str, batch: int, cfg: BenchConfig, seed: int, torch_layout: bool) -> dict:
    """Random inputs in each framework's own layout: NHWC float32 images / int32 ids for tlx,
    NCHW images / int64 ids for torch."""
    rng = np.random.default_rng(seed)
    int_type = np.int64 if torch_layout else np.int32
    if is_text(model):
        shape = (batch, cfg.seq_len)
        return {
            "input_ids": rng.integers(1, VOCAB_SIZE, shape).astype(int_type),
            "attention_mask": np.ones(shape, int_type),
            "token_type_ids": np.zeros(shape, int_type),
            "label": rng.integers(0, 2, batch).astype(int_type),
        }
    size = cfg.image_size
    shape = (batch, 3, size, size) if torch_layout else (batch, size, size, 3)
    return {
        "image": rng.standard_normal(shape, np.float32),
        "label": rng.integers(0, 10, batch).astype(int_type),
    }
