"""Data parallelism with jit + NamedSharding over a one-axis ('data') mesh of every device.

Parameters and optimizer state are replicated; each batch is split along its first axis. jit then
inserts the gradient all-reduce itself, so the train step is the same code on 1 or N devices.
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
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"{what}={batch_size} must be divisible by the number of devices ({n}) so every "
            f"device gets the same share; use a multiple of {n}, e.g. {n * max(1, batch_size // n)}."
        )


def put_replicated(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))


def host_slice(batch: dict) -> dict:
    """This process's contiguous share of a global batch (all of it on one host)."""
    n, i = jax.process_count(), jax.process_index()
    if n == 1:
        return batch
    return {k: v[len(v) // n * i : len(v) // n * (i + 1)] for k, v in batch.items()}


def put_batch(global_batch: dict, mesh: Mesh) -> dict:
    """A global numpy batch -> arrays sharded along the batch axis over every device.

    With several processes each host contributes only its own slice, so hosts never send data.
    """
    sharding = data_sharded(mesh)
    if jax.process_count() == 1:
        return jax.device_put(global_batch, sharding)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in host_slice(global_batch).items()
    }
