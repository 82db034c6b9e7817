"""What the text and image pipelines share: argument checks, the epoch-shuffle seed, the
step -> example-indices schedule, and what the feature cache needs to rebuild batches."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence

import grain
import numpy as np


def check_sizes(source, batch_size: int) -> None:
    if batch_size < 1 or len(source) == 0:
        raise ValueError(
            f"Need batch_size >= 1 and a non-empty source; got {batch_size}, {source!r}."
        )


@dataclasses.dataclass(frozen=True)
class Shard:
    """Which rows of every global batch this process builds: block `index` of `count` equal,
    contiguous blocks (multi-process training; see `tlx.parallel.process_rows`).

    The batch makers take the *global* batch's example indices, so what depends on the whole
    batch (a text batch's padded length) is the same on every process, but read, tokenise or
    decode only their own rows. The default, one block, is the whole batch.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"Shard(index={self.index}, count={self.count}): expected count >= 1 and "
                "0 <= index < count (index: this process, count: the processes)."
            )

    def rows(self, batch_size: int, what: str = "batch_size") -> slice:
        """This shard's rows of a global batch of `batch_size` rows."""
        if batch_size % self.count:
            raise ValueError(
                f"{what}={batch_size} must be divisible by the number of processes "
                f"({self.count}) so each builds the same number of rows; use a multiple of "
                f"{self.count}."
            )
        size = batch_size // self.count
        return slice(self.index * size, (self.index + 1) * size)


ONE_PROCESS = Shard()  # every row of every batch: the default of the batch makers


def train_index_batches(num_examples: int, batch_size: int, seed: int) -> grain.MapDataset:
    """ds[step] -> the example indices of step's batch: see :class:`EpochIndexBatches`."""
    return EpochIndexBatches(num_examples, batch_size, seed)


class EpochIndexBatches(grain.MapDataset):
    """ds[step] -> int64 example indices of step's batch, for ever.

    Epoch e visits the examples in the order `np.random.default_rng((seed, e)).permutation(n)`;
    step s takes positions [s * B, (s + 1) * B) of the concatenated epochs, so a batch may span
    two epochs. Deterministic in (seed, step). One vectorised permutation per epoch instead of
    grain's per-element shuffle, which costs ~75 us an example: 2.4 ms a batch of 32, more than
    a step on cached features.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        super().__init__([])
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self._orders: dict[int, np.ndarray] = {}  # the last epochs' permutations

    def __len__(self) -> int:
        return sys.maxsize  # infinite, like grain's repeat()

    def __str__(self) -> str:
        return (
            f"EpochIndexBatches(n={self.num_examples}, batch={self.batch_size}, seed={self.seed})"
        )

    def _order(self, epoch: int) -> np.ndarray:
        # The reading thread (tlx.data.iterate) and the caller may both be here: every dict
        # operation below is atomic under the GIL, and an epoch another thread evicted first is
        # simply gone (no lock, which worker processes could not pickle).
        order = self._orders.get(epoch)
        if order is None:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.num_examples)
            self._orders[epoch] = order
            for old in sorted(self._orders)[:-4]:  # keep the last 4 epochs' permutations
                self._orders.pop(old, None)
        return order

    def __getitem__(self, step):
        if isinstance(step, slice):
            return self.slice(step)
        positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs, offsets = np.divmod(positions, self.num_examples)
        out = np.empty(self.batch_size, np.int64)
        for epoch in np.unique(epochs):
            rows = epochs == epoch
            out[rows] = self._order(int(epoch))[offsets[rows]]
        return out


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
