"""Orbax checkpoints of a run: written atomically, restored for resume or for ``init_from``.

A checkpoint has up to four items so that each use reads only what it needs:
  params        the model parameters (what ``init_from`` takes from another run)
  model_state   non-parameter variables, e.g. BatchNorm statistics (absent when the model has none)
  train_state   optimizer state and the run's RNG key
  meta          JSON: step, stage index, plan name, config hash
Orbax writes each step into a temporary folder and renames it when complete, so a run killed while
saving leaves the previous checkpoint as the latest.

With several processes every process calls save and restore (orbax synchronises them; process 0,
its primary host, writes the metadata and finalises the step), so the checkpoint folder must be
one that every process reaches (a shared file system). Arrays are saved as global, replicated
arrays and restored so, whatever the number of processes that wrote them.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, directory: str | Path, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            item_handlers={
                "params": ocp.StandardCheckpointHandler(),
                "model_state": ocp.StandardCheckpointHandler(),
                "train_state": ocp.StandardCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=True,
                # Synchronous: the next train step may reuse buffers, and CPU runs gain little.
                enable_async_checkpointing=False,
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, params, train_state, meta: dict, model_state=None) -> None:
        items = dict(
            params=ocp.args.StandardSave(_global(params)),
            train_state=ocp.args.StandardSave(_global(train_state)),
            meta=ocp.args.JsonSave(meta),
        )
        if model_state:
            items["model_state"] = ocp.args.StandardSave(_global(model_state))
        self.manager.save(step, args=ocp.args.Composite(**items))
        self.manager.wait_until_finished()

    def restore(self, step: int, params_like, train_state_like, model_state_like=None):
        """(params, train_state, meta, model_state) restored into the structure, shapes and
        shardings of the given (abstract) trees."""
        items = dict(
            params=ocp.args.StandardRestore(_abstract(params_like)),
            train_state=ocp.args.StandardRestore(_abstract(train_state_like)),
            meta=ocp.args.JsonRestore(),
        )
        if model_state_like:
            items["model_state"] = ocp.args.StandardRestore(_abstract(model_state_like))
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        model_state = restored["model_state"] if model_state_like else model_state_like
        return restored["params"], restored["train_state"], dict(restored["meta"]), model_state

    def restore_model_state(self, model_state_like, step: int | None = None):
        """Non-parameter variables (BatchNorm statistics) of a run, for prediction and
        ``init_from``; an empty like-tree gives it back unchanged."""
        if not model_state_like:
            return model_state_like
        step = self.latest_step() if step is None else step
        item = ocp.args.StandardRestore(_abstract(model_state_like))
        return self.manager.restore(step, args=ocp.args.Composite(model_state=item))["model_state"]

    def restore_meta(self, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def restore_params(self, step: int | None = None, params_like=None):
        """Parameters only (for ``init_from`` and prediction)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(
                f"No checkpoint in {self.directory}: expected a folder written by tlx.train "
                "(workdir/checkpoints/<step>). Check the --workdir or init_from path."
            )
        if params_like is None:  # shapes from the checkpoint's own metadata
            params_like = self.manager.item_metadata(step)["params"]
        item = ocp.args.StandardRestore(_abstract(params_like))
        restored = self.manager.restore(step, args=ocp.args.Composite(params=item))
        return restored["params"]

    def close(self) -> None:
        self.manager.close()


def _abstract(tree):
    """Target shapes and dtypes; arrays keep their sharding, anything else lands on one device
    (several processes: replicated on every device, since orbax restores only global arrays).

    Never the saved sharding: a run trained on 8 devices must restore on 1 (and vice versa).
    """
    multi = jax.process_count() > 1
    default = _replicated() if multi else jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def leaf(x):
        sharding = getattr(x, "sharding", None)
        if not isinstance(sharding, jax.sharding.Sharding) or (
            multi and sharding.is_fully_addressable  # one process's array
        ):
            sharding = default
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    return jax.tree_util.tree_map(leaf, tree)


def _replicated():
    from tlx import parallel

    return parallel.replicated(parallel.make_mesh())


def _global(tree):
    """Several processes: process-local jax arrays (e.g. the RNG key) as global replicated ones,
    which orbax requires; numpy and global arrays as they are. One process: the tree."""
    if jax.process_count() == 1:
        return tree
    from tlx import parallel

    mesh = parallel.make_mesh()
    local = lambda x: isinstance(x, jax.Array) and x.is_fully_addressable
    return jax.tree_util.tree_map(
        lambda x: parallel.put_replicated(x, mesh) if local(x) else x, tree
    )
