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

from tlx.transfer.groups import flatten, unflatten

# forward(params, model_state, batch, rng, train) -> (logits, new_model_state)
ForwardFn = Callable[..., tuple[jax.Array, dict]]


def classification_metrics(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> dict:
    """Weighted sums (not means) so that batches and devices add up exactly."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(losses * weights),
        "correct_sum": jnp.sum(correct * weights),
        "weight_sum": jnp.sum(weights),
    }


def _weights(batch) -> jax.Array:
    if "weight" in batch:
        return batch["weight"].astype(jnp.float32)
    return jnp.ones(batch["label"].shape, jnp.float32)


def make_train_step(
    forward: ForwardFn,
    trainable_paths: Sequence[str],
    tx: optax.GradientTransformation,
    clip_norm: float | None = None,
):
    trainable_paths = tuple(sorted(trainable_paths))

    def train_step(params, model_state, opt_state, batch, rng):
        flat = flatten(params)
        trainable = {k: flat[k] for k in trainable_paths}
        frozen = {k: v for k, v in flat.items() if k not in trainable}

        def loss_fn(trainable_params):
            full = unflatten({**frozen, **trainable_params})
            logits, new_model_state = forward(full, model_state, batch, rng, True)
            sums = classification_metrics(logits, batch["label"], _weights(batch))
            return sums["loss_sum"] / sums["weight_sum"], (sums, new_model_state)

        (loss, (sums, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable
        )
        grad_norm = optax.global_norm(grads)
        if clip_norm:
            scale = jnp.minimum(1.0, clip_norm / (grad_norm + 1e-6))
            grads = jax.tree_util.tree_map(lambda g: g * scale, grads)
        # The optimizer spans every group; frozen groups use set_to_zero and never read their
        # entry, so their parameters stand in for the gradients that were not computed.
        updates, opt_state = tx.update({**frozen, **grads}, opt_state, flat)
        new_trainable = optax.apply_updates(trainable, {k: updates[k] for k in trainable_paths})
        new_params = unflatten({**frozen, **new_trainable})
        metrics = {**sums, "loss": loss, "grad_norm": grad_norm}
        return new_params, new_model_state, opt_state, metrics

    return train_step


def make_eval_step(forward: ForwardFn):
    def eval_step(params, model_state, batch):
        logits, _ = forward(params, model_state, batch, None, False)
        return classification_metrics(logits, batch["label"], _weights(batch))

    return eval_step


def make_predict_fn(forward: ForwardFn):
    def predict(params, model_state, batch):
        logits, _ = forward(params, model_state, batch, None, False)
        return jax.nn.softmax(logits.astype(jnp.float32), -1)

    return predict
