"""The benchmark's input: random batches in each framework's layout, read ahead as the trainer
reads its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import grain
import numpy as np

from experiments.bench.models import VOCAB_SIZE, is_text
from tlx.data.iterate import iterate_batches

if TYPE_CHECKING:
    from experiments.bench.config import BenchConfig


def random_batches(make_batch: Callable[[int], dict], pool_size: int = 2) -> grain.MapDataset:
    """A random-access dataset of endless length, as the trainer's train batches are: ds[step]
    is batch step % pool_size, made up front (numpy's random generator stays out of the figure)."""
    return grain.MapDataset.source([make_batch(seed) for seed in range(pool_size)]).repeat()


def read_ahead(dataset, depth: int = 2, to_device: Callable[[dict], dict] | None = None):
    """dataset[0], dataset[1], ... as the trainer reads its batches (tlx.data.iterate.iterate_batches:
    a thread keeps `depth` ready, placing each on the device with `to_device`); the loop times its
    blocking next(). close() stops the reading."""
    return iterate_batches(dataset, 0, prefetch=depth, to_device=to_device)


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
