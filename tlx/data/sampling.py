"""What the text and image pipelines share: argument checks, the epoch-shuffle seed, the
step -> example-indices schedule, and what the feature cache needs to rebuild batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import grain
import numpy as np


def check_sizes(source, batch_size: int) -> None:
    if batch_size < 1 or len(source) == 0:
        raise ValueError(
            f"Need batch_size >= 1 and a non-empty source; got {batch_size}, {source!r}."
        )


def shuffle_seed(seed: int) -> int:
    """grain reshuffles epoch e with seed + e, so seeds s and s + 1 would share all but one epoch
    order, offset by one epoch. Hashing the seed first makes different seeds unrelated."""
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])


def train_index_batches(num_examples: int, batch_size: int, seed: int) -> grain.MapDataset:
    """ds[step] -> the example indices of step's batch: a fresh permutation every epoch,
    deterministic in (seed, step); a batch may span two epochs."""
    return (
        grain.MapDataset.range(num_examples)
        .shuffle(seed=shuffle_seed(seed))
        .repeat()
        .batch(batch_size)
    )


@dataclasses.dataclass(frozen=True)
class CacheableExamples:
    """The training examples seen as fixed inputs, for :mod:`tlx.transfer.feature_cache`.

    Only built when every example's model input is a pure function of the example (no random
    augmentation), so that a frozen group's output can be computed once per example.
    """

    num_examples: int
    index_batches: grain.MapDataset  # step -> example indices, as in the training batches
    make_batch: Callable[[np.ndarray], dict]  # example indices -> model inputs + "label"
    recipe: str  # everything that decides the inputs (dataset, subset, preprocessing): cache key
    pad_lengths: Sequence[int] = ()  # text: the bucket lengths a batch is padded to
