"""Data parallelism with jit + NamedSharding over a one-axis ('data') mesh of every device.

Parameters and optimizer state are replicated; each batch is split along its first axis. jit then
inserts the gradient all-reduce itself, so the train step is the same code on 1 or N devices.
With several processes (``tlx.distributed``) the mesh spans every process's devices, and each
process puts only its own rows of a batch (:func:`put_batch`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
    check_split(batch_size, mesh.devices.size, what)


def check_split(batch_size: int, n: int, what: str = "batch_size", over: str = "devices") -> None:
    """A batch split `n` ways must divide evenly, so every share is the same size."""
    if batch_size % n:
        raise ValueError(
            f"{what}={batch_size} must be divisible by the number of {over} ({n}) so every "
            f"share is the same size; use a multiple of {n}, e.g. {n * max(1, batch_size // n)}."
        )


def put_replicated(tree, mesh: Mesh):
    """Every leaf replicated on every device of the mesh.

    Several processes: each leaf must hold the same value on every process (parameters and
    optimizer state do: same seed, same checkpoint). Leaves go through host memory, because
    jax 0.10's device_put of a process-local jax.Array onto devices of other processes builds a
    broken array; leaves already placed so are kept.
    """
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        value = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, value, value.shape)

    return jax.tree_util.tree_map(put, tree)


def process_rows(mesh: Mesh) -> tuple[int, int]:
    """(index, count): this process holds block `index` of `count` equal contiguous blocks of
    rows of every batch sharded over the mesh (its devices' shards, in order)."""
    count = jax.process_count()
    if count == 1:
        return 0, 1
    n = mesh.devices.size
    indices = data_sharded(mesh).addressable_devices_indices_map((n,))
    starts = sorted(index[0].start or 0 for index in indices.values())
    per_process = n // count
    index = starts[0] // per_process if per_process else 0
    expected = list(range(index * per_process, (index + 1) * per_process))
    if n % count or starts != expected:
        raise ValueError(
            f"Process {jax.process_index()} holds rows {starts} of the {n} devices' batch "
            f"shards; a multi-process run needs each of its {count} processes to hold one "
            "contiguous block of equal size (the same number of devices on every host)."
        )
    return index, count


def put_batch(batch: dict, mesh: Mesh) -> dict:
    """A numpy batch -> arrays sharded along the batch axis over every device.

    One process: `batch` is the global batch. Several: it is this process's rows of it (block
    `process_rows(mesh)[0]`, as the data pipelines build it), so hosts never load or send each
    other's examples; the global batch is `process_count` times as long.
    """
    sharding = data_sharded(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    count = jax.process_count()
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        out[k] = jax.make_array_from_process_local_data(
            sharding, v, (v.shape[0] * count, *v.shape[1:])
        )
    return out
