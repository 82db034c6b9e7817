"""The optimizer for one stage of a plan: ``optax.multi_transform`` over parameter-group labels.

Each group gets its own label, so its optimizer state lives in its own slot:
- a trainable group: AdamW moments scaled by ``-multiplier``;
- a frozen group: ``optax.set_to_zero()``, which holds no state at all.
A shared ``scale_by_schedule`` outside the partition applies the base learning rate as a function of
the *global* step, so a group unfrozen at step 500 starts on the schedule at step 500.

Per-group schedules (``optim.group_schedules``, see :func:`group_schedules`) move the schedule
inside the partition: each trainable group then scales by its own schedule, read off the count in
its own optimizer state plus the step at which it started training, so that the run clock is still
the global step.

Moving to the next stage (:func:`carry_over`) keeps the state of every group that trains in both
stages and starts newly trainable groups fresh.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tlx.config_checks import CLOCKS, SCHEDULE_FIELDS
from tlx.spec import DECAYS, OptimSpec
from tlx.transfer.plans import FROZEN, Plan, Stage


def learning_rate_schedule(optim: OptimSpec | Mapping, total_steps: int) -> optax.Schedule:
    """Base learning rate over the whole run (per-group multipliers scale it).

    optim.decay: "cosine" | "linear" | "constant" after `warmup_steps` of linear warmup;
    "one_cycle" (optax's cosine one-cycle: warmup fraction `pct_start`, peak `learning_rate`);
    "slanted_triangular" (ULMFiT, Howard & Ruder 2018: linear rise for `cut_frac` of the run,
    then linear decay to learning_rate / `ratio`).
    """
    optim = OptimSpec.of(optim)
    lr, warmup, decay = float(optim.learning_rate), int(optim.warmup_steps), optim.decay
    if decay == "one_cycle":
        return optax.cosine_onecycle_schedule(total_steps, lr, pct_start=float(optim.pct_start))
    if decay == "slanted_triangular":
        cut = max(int(total_steps * float(optim.cut_frac)), 1)
        low = lr / float(optim.ratio)
        return optax.join_schedules(
            [
                optax.linear_schedule(low, lr, cut),
                optax.linear_schedule(lr, low, total_steps - cut),
            ],
            [cut],
        )
    decay_steps = max(total_steps - warmup, 1)
    if decay == "cosine":
        after = optax.cosine_decay_schedule(lr, decay_steps, alpha=optim.final_fraction)
    elif decay == "linear":
        after = optax.linear_schedule(lr, lr * optim.final_fraction, decay_steps)
    elif decay == "constant":
        after = optax.constant_schedule(lr)
    else:
        raise ValueError(
            f"optim.decay={decay!r}; expected {', '.join(map(repr, DECAYS[:-1]))} or {DECAYS[-1]!r}"
        )
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def _decay_mask(params):
    # Weight decay on matrices and embeddings only, never on biases or LayerNorm/BatchNorm scales.
    # A callable, because inside multi_transform the tree holds MaskedNode for other groups' leaves.
    return jax.tree_util.tree_map(lambda p: np.ndim(p) > 1, params)


def momentum_schedule(optim: OptimSpec, total_steps: int) -> optax.Schedule:
    """torch's OneCycleLR momentum (cycle_momentum=True): cosine from max_momentum down to
    base_momentum while the rate rises, and back while it falls (the rate's phase boundaries)."""
    high, low = float(optim.max_momentum), float(optim.base_momentum)
    return optax.piecewise_interpolate_schedule(
        "cosine",
        high,
        {int(float(optim.pct_start) * total_steps): low / high, total_steps: high / low},
    )


def unfreeze_warmup(steps: int) -> optax.Schedule:
    """A group's own factor, counted from the step it starts training: (n + 1) / steps for its
    first `steps` updates, then 1. Its count lives in the group's optimizer state, so it restarts
    when the group unfreezes (fresh state) and carries on across stages where the group trains."""
    return lambda count: jnp.minimum((count + 1) / steps, 1.0)


OPTIMIZERS = ("adamw", "sgd")


def check_optimizer(optim: OptimSpec) -> None:
    if optim.optimizer not in OPTIMIZERS:
        raise ValueError(f"optim.optimizer={optim.optimizer!r}; expected one of {OPTIMIZERS}.")
    if not 0 <= float(optim.momentum) < 1:
        raise ValueError(f"optim.momentum={optim.momentum} must be in [0, 1).")


def group_transform(
    multiplier: float | None,
    optim: OptimSpec,
    own_schedule: optax.Schedule | None = None,
    momentum: optax.Schedule | None = None,
) -> optax.GradientTransformation:
    """optim.unfreeze_warmup_steps > 0 gives every group its own linear warm-up after it starts
    training, on top of the run's schedule (newly unfrozen layers then do not take full-size steps
    with fresh Adam moments while the layers above have settled). `own_schedule`, a function of
    the group's own update count, is its learning rate when the run has per-group schedules;
    `momentum`, also of its own count, replaces SGD's constant momentum (optim.cycle_momentum)."""
    if multiplier is FROZEN:
        return optax.set_to_zero()
    check_optimizer(optim)
    mask = None if optim.decay_vectors else _decay_mask
    if optim.optimizer == "sgd":  # torch.optim.SGD: L2 added to the gradient, then momentum
        parts = [
            optax.add_decayed_weights(optim.weight_decay, mask=mask),
            optax.trace(decay=float(optim.momentum))
            if momentum is None  # else the momentum as a function of the group's update count
            else optax.inject_hyperparams(optax.trace)(decay=momentum),
            optax.scale(-float(multiplier)),
        ]
    else:  # AdamW: decoupled weight decay
        parts = [
            optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps),
            optax.add_decayed_weights(optim.weight_decay, mask=mask),
            optax.scale(-float(multiplier)),
        ]
    warmup = int(optim.unfreeze_warmup_steps)  # >= 0: tlx.config_checks
    if warmup:
        parts.append(optax.scale_by_schedule(unfreeze_warmup(warmup)))
    if own_schedule is not None:
        parts.append(optax.scale_by_schedule(own_schedule))
    return optax.chain(*parts)


def make_optimizer(
    stage: Stage,
    group_of: Mapping[str, str],
    optim: OptimSpec | Mapping,
    schedule: optax.Schedule,
    own_schedules: Mapping[str, optax.Schedule] | None = None,
    momenta: Mapping[str, optax.Schedule] | None = None,
) -> optax.GradientTransformation:
    """Optimizer over the flat ``{path: param}`` dict for one stage. With `own_schedules` (group ->
    schedule of the group's own update count, from :class:`StageOptimizers`) each group scales by
    its own and `schedule` is not used; `momenta` (group -> momentum of its own count) likewise
    for SGD's momentum."""
    own, momenta, optim = own_schedules or {}, momenta or {}, OptimSpec.of(optim)
    transforms = {
        group: group_transform(multiplier, optim, own.get(group), momenta.get(group))
        for group, multiplier in stage.multipliers.items()
    }
    return optax.chain(
        optax.multi_transform(transforms, dict(group_of)),
        optax.identity() if own_schedules else optax.scale_by_schedule(schedule),
    )


def group_schedule_overrides(optim: OptimSpec | Mapping, labels: Sequence[str]) -> dict[str, dict]:
    """optim.group_schedules resolved to {label: overrides} for the labels it names.

    Keys are group names or fnmatch patterns ("layer_1*"); the first key (in the order given)
    that matches a label, or its group (an affine BatchNorm label "layer_3/bn" follows "layer_3"
    unless a key names it), wins. Values override fields of the optim section (SCHEDULE_FIELDS)
    and may set `clock`: "run" (default; the schedule runs over the whole run's steps, as the
    shared one does) or "group" (it starts at the group's first trained step and spans the steps
    left, like a fresh one-cycle after each unfreeze). Fails on keys that match no label and on
    unknown fields, before anything is built."""
    schedules = OptimSpec.of(optim).group_schedules
    given = {str(k): dict(v) for k, v in schedules.items()}
    for key, fields in given.items():
        unknown = sorted(set(fields) - set(SCHEDULE_FIELDS) - {"clock"})
        if unknown:
            raise ValueError(
                f"optim.group_schedules[{key!r}] has unknown fields {unknown}; it may set "
                f"{', '.join(SCHEDULE_FIELDS)} and clock ('run' or 'group')."
            )
        if fields.get("clock", "run") not in CLOCKS:
            raise ValueError(
                f"optim.group_schedules[{key!r}].clock={fields['clock']!r}; "
                "expected 'run' or 'group'."
            )
        if not any(_matches(key, label) for label in labels):
            raise ValueError(
                f"optim.group_schedules key {key!r} matches no parameter group; the groups are "
                f"{list(labels)}. Use a group name or an fnmatch pattern such as 'layer_*'."
            )
    resolved = {}
    for label in labels:
        for name in (label, label.split("/")[0]):  # the label itself first, then its group
            key = next((k for k in given if fnmatch.fnmatchcase(name, k)), None)
            if key is not None:
                resolved[label] = given[key]
                break
    return resolved


def check_schedules(
    optim: OptimSpec | Mapping, labels: Sequence[str], total_steps: int
) -> dict[str, dict]:
    """Builds every schedule the optim section names (so a bad decay or group schedule fails
    here, before any compute) and returns the per-label overrides."""
    optim = OptimSpec.of(optim)
    check_optimizer(optim)
    learning_rate_schedule(optim, total_steps)
    overrides = group_schedule_overrides(optim, labels)
    for fields in overrides.values():
        learning_rate_schedule(optim.with_fields(fields), total_steps)
    return overrides


def _matches(pattern: str, label: str) -> bool:
    return fnmatch.fnmatchcase(label, pattern) or fnmatch.fnmatchcase(label.split("/")[0], pattern)


def training_start_step(plan: Plan, stage_index: int, label: str) -> int:
    """The step at which `label` began the stretch of trainable stages that reaches
    `stage_index` (its optimizer state, and with it its own count, started fresh there)."""
    start = plan.stages[stage_index].start_step
    for stage in reversed(plan.stages[:stage_index]):
        if stage.multipliers.get(label) is FROZEN:
            break
        start = stage.start_step
    return start


class StageOptimizers:
    """stage index -> that stage's optimizer, with the run's schedule and any per-group ones, and
    the learning rate each group takes at a step (for the logs).

    A group's own schedule is evaluated at (the step it started training + its own count) with
    clock "run", and at its own count over the steps left from its start with clock "group"."""

    def __init__(
        self, plan: Plan, group_of: Mapping[str, str], optim: OptimSpec | Mapping, total_steps: int
    ):
        self.plan, self.group_of, self.optim = plan, dict(group_of), OptimSpec.of(optim)
        self.total_steps = total_steps
        self.schedule = learning_rate_schedule(self.optim, total_steps)
        self.overrides = check_schedules(self.optim, list(plan.stages[0].multipliers), total_steps)
        self.warmup = int(self.optim.unfreeze_warmup_steps)
        self.momentum = None
        if self.optim.cycle_momentum:
            if self.optim.optimizer != "sgd" or self.optim.decay != "one_cycle":
                raise ValueError(
                    "optim.cycle_momentum cycles SGD's momentum with a one-cycle rate; got "
                    f"optim.optimizer={self.optim.optimizer!r}, optim.decay={self.optim.decay!r}: "
                    "set optimizer='sgd' and decay='one_cycle', or cycle_momentum=False."
                )
            self.momentum = momentum_schedule(self.optim, total_steps)

    def own_schedule(self, label: str, start: int) -> optax.Schedule:
        """`label`'s schedule as a function of its own update count, given its start step."""
        fields = self.overrides.get(label, {})
        if fields.get("clock", "run") == "group":
            return learning_rate_schedule(
                self.optim.with_fields(fields), max(self.total_steps - start, 1)
            )
        shape = learning_rate_schedule(self.optim.with_fields(fields), self.total_steps)
        return lambda count: shape(count + start)

    def __call__(self, index: int) -> optax.GradientTransformation:
        stage = self.plan.stages[index]
        starts = {label: training_start_step(self.plan, index, label) for label in stage.trainable}
        momenta = None
        if self.momentum is not None:  # of the run's step: the group's own count + its start
            momenta = {label: _shifted(self.momentum, s) for label, s in starts.items()}
        own = None
        if self.overrides:
            own = {label: self.own_schedule(label, s) for label, s in starts.items()}
        return make_optimizer(stage, self.group_of, self.optim, self.schedule, own, momenta)

    def learning_rates(self, index: int, step: int) -> dict[str, float]:
        """{label: learning rate of its update at global `step`} in stage `index` (0 if frozen)."""
        rates = {}
        for label, multiplier in self.plan.stages[index].multipliers.items():
            if multiplier is FROZEN:
                rates[label] = 0.0
                continue
            start = training_start_step(self.plan, index, label)
            if self.overrides:
                rate = self.own_schedule(label, start)(step - start)
            else:
                rate = self.schedule(step)
            if self.warmup:
                rate = rate * unfreeze_warmup(self.warmup)(step - start)
            rates[label] = float(rate) * float(multiplier)
        return rates


def _shifted(schedule: optax.Schedule, start: int) -> optax.Schedule:
    return lambda count: schedule(count + start)


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
    return (partition, old_state[1])  # the global schedule count (if any) carries over


def state_bytes(state) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(state))
