"""Pure train and eval steps; the trainer jit-compiles one train step per plan stage.

The gradient is taken only with respect to the stage's trainable parameters: frozen ones enter
the loss as constants, so they cost no backward work, and clipping and logging see only
gradients that exist. Frozen parameters are returned untouched (bit-identical).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from tlx.tasks import Classification, Task, batch_weights
from tlx.tree import flatten, unflatten
from tlx.types import ForwardFn  # noqa: F401  (re-exported: steps take a ForwardFn)

# The default task of the step builders (callers that predate tasks are classifiers).
CLASSIFICATION = Classification()


def check_accumulation(batch_size: int, accum_steps: int) -> None:
    if accum_steps < 1 or batch_size % accum_steps:
        raise ValueError(
            f"grad_accum_steps={accum_steps} must be a positive divisor of each device's batch "
            f"({batch_size} examples), so that every micro-batch has the same size; e.g. "
            f"{max(d for d in range(1, min(accum_steps, batch_size) + 1) if batch_size % d == 0)}."
        )


def micro_batches(batch: dict, accum_steps: int) -> dict:
    """[B, ...] arrays -> [accum_steps, B / accum_steps, ...], micro-batch i = rows i, i + k, ...

    Strided rather than contiguous: a batch sharded over devices in contiguous blocks then gives
    every device an equal share of each micro-batch, with no data moved between devices."""
    return {
        k: jnp.swapaxes(v.reshape(v.shape[0] // accum_steps, accum_steps, *v.shape[1:]), 0, 1)
        for k, v in batch.items()
    }


def make_split_train_step(
    forward: ForwardFn,
    trainable_paths: Sequence[str],
    tx: optax.GradientTransformation,
    clip_norm: float | None = None,
    *,
    accum_steps: int = 1,
    axis_name: str | None = None,
    task: Task = CLASSIFICATION,
):
    """The trainer's step over flat dicts, returning only what changes; `task` scores the
    outputs (its ``loss_sum`` is the loss).

    step(trainable, frozen, state, opt_state, batch, rng) -> (trainable, state_updates,
    opt_state, metrics), where `trainable` and `frozen` split the flat '/'-path parameters,
    `state` is the flat model state ('batch_stats/...' paths) and `state_updates` holds only the
    state entries the forward changed. A compiled step that hands back every frozen parameter
    copies it on each call: 1.2 ms for MobileNetV2's 268 arrays, more than a cached feature
    extraction step's whole compute.

    accum_steps > 1: the batch is split into that many micro-batches, run one after another
    (`lax.scan`), and their gradients summed before the one update: the same update as the
    whole batch at a fraction of the activation memory. The loss is normalised by the whole
    batch's weight, so the gradient is the big batch's. Micro-batch i draws its dropout from
    fold_in(rng, i), and model state (BatchNorm statistics in "train" mode) is threaded through
    the micro-batches in order.

    axis_name: under `pmap`, the mapped axis; the loss is normalised by the weight of the
    global batch (all devices) and gradients and metrics are summed over it.
    """
    trainable_paths = tuple(sorted(trainable_paths))

    def global_sum(x):
        return x if axis_name is None else jax.lax.psum(x, axis_name)

    def micro_grads(trainable, frozen, state, batch, rng, total_weight):
        """Gradient of this batch's share of the (global) mean loss; sums; changed state."""
        model_state = unflatten(state)

        def loss_fn(trainable_params):
            full = unflatten({**frozen, **trainable_params})
            outputs, new_model_state = forward(full, model_state, batch, rng, True)
            sums = task.batch_sums(outputs, batch)
            return sums["loss_sum"] / total_weight, (sums, new_model_state)

        (_, (sums, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        # Unchanged state comes back as the very tracer that went in: leave it out.
        updates = {k: v for k, v in flatten(new_model_state).items() if v is not state.get(k)}
        return grads, sums, updates

    def accumulated_grads(trainable, frozen, state, batch, rng):
        total_weight = global_sum(jnp.sum(batch_weights(batch)))
        if accum_steps == 1:
            return micro_grads(trainable, frozen, state, batch, rng, total_weight)
        micro = micro_batches(batch, accum_steps)
        first = {k: v[0] for k, v in micro.items()}
        # The first micro-batch runs outside the scan: it tells which state entries change,
        # and only those ride in the scan's carry.
        grads, sums, updates = micro_grads(
            trainable, frozen, state, first, jax.random.fold_in(rng, 0), total_weight
        )

        def body(carry, inputs):
            grads, sums, updates = carry
            batch, index = inputs
            g, s, u = micro_grads(
                trainable,
                frozen,
                {**state, **updates},
                batch,
                jax.random.fold_in(rng, index),
                total_weight,
            )
            add = lambda a, b: jax.tree_util.tree_map(jnp.add, a, b)
            return (add(grads, g), add(sums, s), {k: u[k] for k in updates}), None

        rest = {k: v[1:] for k, v in micro.items()}
        indices = jnp.arange(1, accum_steps, dtype=jnp.uint32)
        (grads, sums, updates), _ = jax.lax.scan(body, (grads, sums, updates), (rest, indices))
        return grads, sums, updates

    def train_step(trainable, frozen, state, opt_state, batch, rng):
        grads, sums, state_updates = accumulated_grads(trainable, frozen, state, batch, rng)
        if axis_name is not None:
            grads, sums = jax.lax.psum((grads, sums), axis_name)
            # Each device's running statistics saw its own shard: keep their mean.
            state_updates = jax.lax.pmean(state_updates, axis_name)
        loss = sums["loss_sum"] / sums["weight_sum"]
        grad_norm = optax.global_norm(grads)
        if clip_norm:
            scale = jnp.minimum(1.0, clip_norm / (grad_norm + 1e-6))
            grads = jax.tree_util.tree_map(lambda g: g * scale, grads)
        # The optimizer spans every group; frozen groups use set_to_zero and never read their
        # entry, so their parameters stand in for the gradients that were not computed.
        updates, opt_state = tx.update({**frozen, **grads}, opt_state, {**frozen, **trainable})
        new_trainable = optax.apply_updates(trainable, {k: updates[k] for k in trainable_paths})
        metrics = {**sums, "loss": loss, "grad_norm": grad_norm}
        return new_trainable, state_updates, opt_state, metrics

    return train_step


def make_train_step(
    forward: ForwardFn,
    trainable_paths: Sequence[str],
    tx: optax.GradientTransformation,
    clip_norm: float | None = None,
    task: Task = CLASSIFICATION,
):
    """step(params, model_state, opt_state, batch, rng) -> (params, model_state, opt_state,
    metrics) over nested trees: the split step wrapped for callers that hold whole trees."""
    trainable_paths = tuple(sorted(trainable_paths))
    split_step = make_split_train_step(forward, trainable_paths, tx, clip_norm, task=task)

    def train_step(params, model_state, opt_state, batch, rng):
        flat = flatten(params)
        trainable = {k: flat[k] for k in trainable_paths}
        frozen = {k: v for k, v in flat.items() if k not in trainable}
        state = flatten(model_state)
        new_trainable, state_updates, opt_state, metrics = split_step(
            trainable, frozen, state, opt_state, batch, rng
        )
        new_state = unflatten({**state, **state_updates})
        return unflatten({**frozen, **new_trainable}), new_state, opt_state, metrics

    return train_step


def make_multi_step(keyed_step: Callable) -> Callable:
    """Several train steps in one call: `lax.scan` of `keyed_step(trainable, frozen, state,
    opt_state, batch, rng, step)` (a split step that folds `step` into `rng` itself) over a tuple
    of batches, for steps so short that the host's per-step work would dominate (cached features).
    Returns (trainable, state, opt_state, metrics stacked over the steps); the steps are the same
    computation with the same dropout keys as calling `keyed_step` once per batch."""

    def multi(trainable, frozen, state, opt_state, batches, rng, first_step):
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *batches)
        offsets = jnp.arange(len(batches), dtype=jnp.int32)

        def body(carry, inputs):
            trainable, state, opt_state = carry
            batch, offset = inputs
            trainable, updates, opt_state, metrics = keyed_step(
                trainable, frozen, state, opt_state, batch, rng, first_step + offset
            )
            # The carry keeps its keys: updates of state the step was not given are not kept
            # (a cached step reads no BatchNorm statistics and changes none).
            state = {k: updates.get(k, v) for k, v in state.items()}
            return (trainable, state, opt_state), metrics

        (trainable, state, opt_state), metrics = jax.lax.scan(
            body, (trainable, state, opt_state), (stacked, offsets)
        )
        return trainable, state, opt_state, metrics

    return multi


def make_eval_step(forward: ForwardFn, axis_name: str | None = None, task: Task = CLASSIFICATION):
    """The task's metric sums of a batch (under `pmap`, summed over `axis_name`); for a task that
    collects (detection: its mAP is no sum), (sums, the task's per-example rows)."""

    def eval_step(params, model_state, batch):
        outputs, _ = forward(params, model_state, batch, None, False)
        sums = task.batch_sums(outputs, batch)
        sums = sums if axis_name is None else jax.lax.psum(sums, axis_name)
        if getattr(task, "collects", False):
            return sums, task.collect(outputs, batch)
        return sums

    return eval_step


def make_predict_fn(forward: ForwardFn, task: Task = CLASSIFICATION):
    """What the task predicts per example (classification: class probabilities)."""

    def predict(params, model_state, batch):
        outputs, _ = forward(params, model_state, batch, None, False)
        return task.predict(outputs)

    return predict
