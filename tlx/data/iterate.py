"""Feed a random-access batch dataset to the training loop, computed ahead of the consumer.

Both pipelines (text and images) are `grain.MapDataset`s where ds[step] is step's batch; the
trainer starts reading at the step it resumes from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grain
import numpy as np
from absl import flags


def iterate_batches(
    ds: grain.MapDataset,
    start_step: int,
    *,
    num_workers: int = 0,
    prefetch: int = 2,
    to_device: Callable[[dict], dict] | None = None,
) -> Iterator[dict]:
    """ds[start_step], ds[start_step + 1], ..., computed ahead of the consumer.

    num_workers > 0: grain worker processes (spawned; worker i computes every num_workers-th
    batch, grain interleaves them back in order), each keeping `prefetch` batches ready.
    num_workers == 0: one background thread keeps `prefetch` batches ready (PIL's resize and
    numpy's arithmetic release the GIL). Either way the batches are exactly ds[step]. Workers
    unpickle the pipeline (numpy, PIL, grain, and tfds for tfds-backed sources) and never
    initialise JAX; spawn also re-imports the entry script, which should not touch a GPU at
    import time. Starting workers takes seconds (each imports grain, which imports JAX).

    `to_device` (e.g. `parallel.put_batch`) is applied to every batch: in the reading thread when
    there are no workers, so the copy to the device overlaps the step (it costs ~0.3 ms a batch,
    as much as a step on cached features), else as batches arrive.
    """
    if start_step < 0 or num_workers < 0 or prefetch < 1:
        raise ValueError(
            f"Need start_step, num_workers >= 0, prefetch >= 1; got "
            f"{start_step}, {num_workers}, {prefetch}."
        )
    remaining = ds[start_step:]
    put_in_thread = to_device is not None and num_workers == 0
    if put_in_thread:
        remaining = remaining.map(
            lambda batch: to_device({k: np.asarray(v) for k, v in batch.items()})
        )
    if num_workers > 0:
        # grain 0.2.18's mp_prefetch reads an absl flag (worker profiling) and raises
        # UnparsedFlagAccessError outside absl.app (google/grain#1355): use the defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        batches = remaining.to_iter_dataset(
            grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
        ).mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=prefetch)
        )
    else:
        batches = remaining.to_iter_dataset(
            grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)
        )
    iterator = iter(batches)
    try:
        for batch in iterator:
            if put_in_thread:
                yield batch
                continue
            # Workers hand over grain SharedMemoryArrays (ndarray subclasses that unlink their
            # shared memory when deleted); plain ndarray views keep that memory alive, uncopied.
            batch = {key: np.asarray(value) for key, value in batch.items()}
            yield batch if to_device is None else to_device(batch)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
