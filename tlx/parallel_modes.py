"""The two ways tlx spreads a step over devices, chosen by ``config.parallel``.

``jit`` (the default): one program over a 'data' mesh of every device; parameters and optimizer
state are replicated, batches are sharded along their first axis and XLA inserts the gradient
all-reduce (:mod:`tlx.parallel`).

``pmap``: the classic SPMD path. Every local device holds a copy of parameters and optimizer state
(a leading device axis), each takes its share of the batch, and the step sums gradients and metrics
with ``psum`` over the mapped axis. It is there for code and habits written around pmap, and to
check the jit path against an independent implementation: on 8 CPU devices both train to the same
parameters (tests/test_parallel_modes.py).

Both take the same steps from :mod:`tlx.steps`; a mode only says how arrays are placed, how a
function is compiled and how results come back to the host. Checkpoints hold one copy of every
array in either mode, so a run can resume in the other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from tlx import parallel
from tlx.spec import PARALLEL_MODES as MODES
from tlx.spec import ShardingSpec

PMAP_AXIS = "devices"


def check_mode(name: str) -> str:
    if name not in MODES:
        raise ValueError(f"config.parallel={name!r} is not one of {MODES}.")
    return name


class JitMode:
    """jit + NamedSharding over a one-axis mesh of every device."""

    name = "jit"
    axis_name = None  # the steps need no explicit collective

    def __init__(self, devices=None):
        self.mesh = parallel.make_mesh(devices)

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    def check_batch_size(self, batch_size: int, what: str = "batch_size") -> None:
        parallel.check_batch_size(batch_size, self.mesh, what)

    def replicate(self, tree):
        return parallel.put_replicated(tree, self.mesh)

    def unreplicate(self, tree):
        return tree

    def put_batch(self, batch: dict) -> dict:
        return parallel.put_batch(batch, self.mesh)

    def compile_train(self, step: Callable, donate_argnums: tuple[int, ...] = ()) -> Callable:
        """`donate_argnums`: inputs the step replaces (parameters, optimizer state), whose
        buffers XLA then reuses for the outputs instead of allocating new ones every step."""
        return jax.jit(step, donate_argnums=donate_argnums)

    def compile_eval(self, step: Callable) -> Callable:
        return jax.jit(step)

    def host_metrics(self, metrics):
        return metrics

    def host_rows(self, rows):
        """Per-example outputs of a step [B, ...] as numpy, every process's rows."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(rows, tiled=True))
        return np.asarray(rows)


class PmapMode:
    """pmap over this process's devices (one process: across hosts use jit)."""

    name = "pmap"
    axis_name = PMAP_AXIS

    def __init__(self, devices=None):
        if jax.process_count() > 1:
            raise ValueError(
                f"config.parallel='pmap' runs in one process, and this run has "
                f"{jax.process_count()}; use config.parallel='jit' across hosts."
            )
        self.devices = list(jax.local_devices() if devices is None else devices)
        # jax >= 0.8 builds pmap on jit + shard_map: its inputs are arrays sharded along a
        # leading device axis (device_put_replicated / _sharded are gone).
        self.sharding = NamedSharding(Mesh(np.asarray(self.devices), (PMAP_AXIS,)), P(PMAP_AXIS))

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    def check_batch_size(self, batch_size: int, what: str = "batch_size") -> None:
        parallel.check_split(batch_size, self.num_devices, what)

    def _stacked(self, x: np.ndarray):
        return jax.device_put(x, self.sharding)

    def replicate(self, tree):
        """One copy per device, stacked on a new leading axis."""
        n = self.num_devices
        return jax.tree_util.tree_map(
            lambda x: self._stacked(np.broadcast_to(np.asarray(x), (n, *np.shape(x)))), tree
        )

    def unreplicate(self, tree):
        """Device 0's copy (all copies are equal: every update is computed from psum'd values)."""
        return jax.tree_util.tree_map(lambda x: x[0], tree)

    def put_batch(self, batch: dict) -> dict:
        """[B, ...] -> [devices, B / devices, ...], one slice per device."""
        n = self.num_devices
        return {
            k: self._stacked(np.asarray(v).reshape(n, len(v) // n, *np.shape(v)[1:]))
            for k, v in batch.items()
        }

    def compile_train(self, step: Callable, donate_argnums: tuple[int, ...] = ()) -> Callable:
        """step(trainable, frozen, state, opt_state, batch or batches, rng, step) with the run's
        key and step number broadcast to every device."""
        return jax.pmap(
            step,
            axis_name=PMAP_AXIS,
            in_axes=(0, 0, 0, 0, 0, None, None),
            donate_argnums=donate_argnums,
        )

    def compile_eval(self, step: Callable) -> Callable:
        return jax.pmap(step, axis_name=PMAP_AXIS)

    def host_metrics(self, metrics):
        return self.unreplicate(metrics)  # psum'd: every device holds the same sums

    def host_rows(self, rows):
        """Per-example outputs [devices, B / devices, ...] as numpy [B, ...], in batch order."""
        rows = np.asarray(rows)
        return rows.reshape(-1, *rows.shape[2:])


MODEL_AXIS = "model"
AUTO_MIN_ELEMENTS = 1 << 16  # smaller arrays stay replicated: splitting them saves little


def parse_spec(text: str, ndim: int, path: str) -> P:
    """'model,None' -> P('model', None); 'replicated' -> P()."""
    if text.strip() in ("", "replicated"):
        return P()
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != ndim or any(p not in ("None", MODEL_AXIS) for p in parts):
        raise ValueError(
            f"sharding rule {text!r} for {path} (rank {ndim}) must list {ndim} entries, each "
            f"'None' or '{MODEL_AXIS}' (e.g. {','.join(['None'] * (ndim - 1) + [MODEL_AXIS])}), "
            "or be 'replicated'."
        )
    return P(*(None if p == "None" else p for p in parts))


def leaf_path(key_path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key_path)


class ShardedMode(JitMode):
    """jit over a ('data', 'model') mesh: batches split over 'data'; parameters, their optimizer
    state and model state split over 'model' by `rules` (regex on the '/' path -> spec), else by
    the automatic rule: an array of at least 2**16 elements is split along its largest dimension
    that the 'model' axis divides. For models larger than one device's memory; XLA inserts the
    gathers and reduce-scatters (the FSDP / ZeRO-3 layout when every array is split)."""

    def __init__(self, model_axis: int, rules=(), devices=None):
        devices = jax.devices() if devices is None else devices
        if model_axis < 1 or len(devices) % model_axis:
            raise ValueError(
                f"sharding.model_axis={model_axis} must divide the number of devices "
                f"({len(devices)})."
            )
        grid = np.asarray(devices).reshape(len(devices) // model_axis, model_axis)
        self.mesh = Mesh(grid, (parallel.DATA_AXIS, MODEL_AXIS))
        self.model_axis = model_axis
        self.rules = [(re.compile(pattern), spec) for pattern, spec in rules]

    @property
    def num_devices(self) -> int:  # the batch is split over the 'data' axis only
        return self.mesh.shape[parallel.DATA_AXIS]

    def check_batch_size(self, batch_size: int, what: str = "batch_size") -> None:
        over = "devices on the 'data' axis (devices / sharding.model_axis)"
        parallel.check_split(batch_size, self.num_devices, what, over)

    def spec_for(self, path: str, shape: tuple[int, ...]) -> P:
        for pattern, text in self.rules:
            if pattern.search(path):
                spec = parse_spec(text, len(shape), path)
                for dim, axis in zip(shape, spec):
                    if axis == MODEL_AXIS and dim % self.model_axis:
                        raise ValueError(
                            f"sharding rule {pattern.pattern!r} splits {path} {shape} over "
                            f"'{MODEL_AXIS}' ({self.model_axis} devices), which does not divide "
                            f"{dim}; pick another dimension or 'replicated'."
                        )
                return spec
        if math.prod(shape) < AUTO_MIN_ELEMENTS:
            return P()
        dims = [d for d in np.argsort(shape)[::-1] if shape[d] % self.model_axis == 0]
        if not dims:
            return P()
        return P(*(MODEL_AXIS if i == dims[0] else None for i in range(len(shape))))

    def replicate(self, tree):
        """Place every array by its rule (the name is the interface's: 'replicated or split')."""

        def place(key_path, x):
            spec = self.spec_for(leaf_path(key_path), np.shape(x))
            return jax.device_put(x, NamedSharding(self.mesh, spec))

        return jax.tree_util.tree_map_with_path(place, tree)

    def describe(self, tree) -> str:
        leaves = jax.tree_util.tree_leaves(tree)
        split = [x for x in leaves if any(a is not None for a in x.sharding.spec)]
        total = sum(x.nbytes for x in leaves)
        per_device = sum(x.addressable_shards[0].data.nbytes for x in leaves)
        return (
            f"Sharding: {len(split)} of {len(leaves)} parameter arrays split over "
            f"'{MODEL_AXIS}' ({self.model_axis} devices): {per_device / 2**20:.1f} MiB of "
            f"{total / 2**20:.1f} MiB per device."
        )


def make_mode(name: str, sharding: ShardingSpec | Mapping | None = None):
    """The mode of `config.parallel`, with `config.sharding` (model_axis, rules) for jit."""
    sharding = ShardingSpec.of(sharding or {})
    model_axis = int(sharding.model_axis)
    if check_mode(name) == "pmap":
        if model_axis != 1:
            raise ValueError(
                "sharding.model_axis > 1 needs config.parallel='jit' (pmap replicates every "
                "parameter on every device)."
            )
        return PmapMode()
    if model_axis == 1 and not sharding.rules:
        return JitMode()
    return ShardedMode(model_axis, parse_rules(sharding.rules))


def parse_rules(rules) -> tuple[tuple[str, str], ...]:
    """'regex=spec; regex=spec' (the command line's form) or pairs -> ((regex, spec), ...)."""
    if isinstance(rules, str):
        pairs = []
        for item in filter(None, (r.strip() for r in rules.split(";"))):
            pattern, sep, spec = item.rpartition("=")
            if not sep or not pattern:
                raise ValueError(
                    f"sharding rule {item!r} must read 'regex=spec', e.g. "
                    "'attention/.*/kernel$=None,model'."
                )
            pairs.append((pattern.strip(), spec.strip()))
        return tuple(pairs)
    return tuple((str(p), str(s)) for p, s in rules)
