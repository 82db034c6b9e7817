"""The optimizer for one stage of a plan: ``optax.multi_transform`` over parameter-group labels.

Each group gets its own label, so its optimizer state lives in its own slot:
- a trainable group: AdamW moments scaled by ``-multiplier``;
- a frozen group: ``optax.set_to_zero()``, which holds no state at all.
A shared ``scale_by_schedule`` outside the partition applies the base learning rate as a function of
the *global* step, so a group unfrozen at step 500 starts on the schedule at step 500.

Moving to the next stage (:func:`carry_over`) keeps the state of every group that trains in both
stages and starts newly trainable groups fresh.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tlx.transfer.plans import FROZEN, Stage


def learning_rate_schedule(cfg: Mapping, total_steps: int) -> optax.Schedule:
    """Base learning rate over the whole run (per-group multipliers scale it).

    optim.decay: "cosine" | "linear" | "constant" after `warmup_steps` of linear warmup;
    "one_cycle" (optax's cosine one-cycle: warmup fraction `pct_start`, peak `learning_rate`);
    "slanted_triangular" (ULMFiT, Howard & Ruder 2018: linear rise for `cut_frac` of the run,
    then linear decay to learning_rate / `ratio`).
    """
    lr, warmup = float(cfg["learning_rate"]), int(cfg.get("warmup_steps", 0))
    decay = cfg.get("decay", "cosine")
    if decay == "one_cycle":
        return optax.cosine_onecycle_schedule(
            total_steps, lr, pct_start=float(cfg.get("pct_start", 0.3))
        )
    if decay == "slanted_triangular":
        cut = max(int(total_steps * float(cfg.get("cut_frac", 0.1))), 1)
        low = lr / float(cfg.get("ratio", 32))
        return optax.join_schedules(
            [
                optax.linear_schedule(low, lr, cut),
                optax.linear_schedule(lr, low, total_steps - cut),
            ],
            [cut],
        )
    decay_steps = max(total_steps - warmup, 1)
    if decay == "cosine":
        after = optax.cosine_decay_schedule(lr, decay_steps, alpha=cfg.get("final_fraction", 0.0))
    elif decay == "linear":
        after = optax.linear_schedule(lr, lr * cfg.get("final_fraction", 0.0), decay_steps)
    elif decay == "constant":
        after = optax.constant_schedule(lr)
    else:
        raise ValueError(
            f"optim.decay={decay!r}; expected 'cosine', 'linear', 'constant', 'one_cycle' or "
            "'slanted_triangular'"
        )
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def _decay_mask(params):
    # Weight decay on matrices and embeddings only, never on biases or LayerNorm/BatchNorm scales.
    # A callable, because inside multi_transform the tree holds MaskedNode for other groups' leaves.
    return jax.tree_util.tree_map(lambda p: np.ndim(p) > 1, params)


def unfreeze_warmup(steps: int) -> optax.Schedule:
    """A group's own factor, counted from the step it starts training: (n + 1) / steps for its
    first `steps` updates, then 1. Its count lives in the group's optimizer state, so it restarts
    when the group unfreezes (fresh state) and carries on across stages where the group trains."""
    return lambda count: jnp.minimum((count + 1) / steps, 1.0)


def group_transform(multiplier: float | None, cfg: Mapping) -> optax.GradientTransformation:
    """optim.unfreeze_warmup_steps > 0 gives every group its own linear warm-up after it starts
    training, on top of the run's schedule (newly unfrozen layers then do not take full-size steps
    with fresh Adam moments while the layers above have settled)."""
    if multiplier is FROZEN:
        return optax.set_to_zero()
    parts = [
        optax.scale_by_adam(
            b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8)
        ),
        optax.add_decayed_weights(cfg.get("weight_decay", 0.0), mask=_decay_mask),
        optax.scale(-float(multiplier)),
    ]
    warmup = int(cfg.get("unfreeze_warmup_steps", 0) or 0)
    if warmup < 0:
        raise ValueError(f"optim.unfreeze_warmup_steps={warmup} must be >= 0.")
    if warmup:
        parts.append(optax.scale_by_schedule(unfreeze_warmup(warmup)))
    return optax.chain(*parts)


def make_optimizer(
    stage: Stage,
    group_of: Mapping[str, str],
    cfg: Mapping,
    schedule: optax.Schedule,
) -> optax.GradientTransformation:
    """Optimizer over the flat ``{path: param}`` dict for one stage."""
    transforms = {
        group: group_transform(multiplier, cfg) for group, multiplier in stage.multipliers.items()
    }
    return optax.chain(
        optax.multi_transform(transforms, dict(group_of)),
        optax.scale_by_schedule(schedule),
    )


def group_states(opt_state) -> dict:
    """The per-group slots of a state made by :func:`make_optimizer`."""
    return opt_state[0].inner_states


def carry_over(old_state, new_state, old_stage: Stage, new_stage: Stage):
    """New stage's state: groups trainable in both stages keep their state; the rest start fresh."""
    old_slots, new_slots = group_states(old_state), dict(group_states(new_state))
    for group in new_stage.trainable:
        if old_stage.multipliers.get(group) is not FROZEN:
            new_slots[group] = old_slots[group]
    partition = new_state[0]._replace(inner_states=new_slots)
    return (partition, old_state[1])  # the global schedule count carries over


def state_bytes(state) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(state))
