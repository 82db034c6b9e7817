"""Freezing as carried out by the optimizer and the per-stage train step, on a tiny MLP."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlx.steps import make_train_step
from tlx.transfer import audit, plans
from tlx.transfer.groups import assign_groups
from tlx.transfer.optim import carry_over, group_states, make_optimizer, state_bytes
from tlx.tree import flatten

GROUPS = [("layer_0", "^Dense_0/"), ("layer_1", "^Dense_1/"), ("head", "^Dense_2/")]
OPTIM = {"learning_rate": 1e-2, "weight_decay": 0.01}


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16)(x))
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(3)(x)


def setup():
    model = MLP()
    params = model.init(jax.random.key(0), jnp.zeros((1, 8)))["params"]
    group_of = assign_groups(list(flatten(params)), GROUPS)

    def forward(p, model_state, batch, rng, train):
        return model.apply({"params": p}, batch["x"]), model_state

    rng = np.random.default_rng(0)
    batches = [
        {"x": rng.normal(size=(4, 8)).astype(np.float32), "label": rng.integers(0, 3, 4)}
        for _ in range(6)
    ]
    return params, group_of, forward, batches


def run_stage(plan_stage, params, opt_state, group_of, forward, batches, tx=None):
    tx = tx or make_optimizer(plan_stage, group_of, OPTIM, lambda step: OPTIM["learning_rate"])
    if opt_state is None:
        opt_state = tx.init(flatten(params))
    trainable = [p for p, g in group_of.items() if g in plan_stage.trainable]
    step = jax.jit(make_train_step(forward, trainable, tx, clip_norm=1.0))
    for batch in batches:
        params, _, opt_state, _ = step(params, {}, opt_state, batch, jax.random.key(1))
    return params, opt_state


def test_frozen_parameters_are_bit_identical_and_trainable_ones_move():
    params, group_of, forward, batches = setup()
    stage = plans.freeze_to([g for g, _ in GROUPS], 1).stages[0]
    new_params, _ = run_stage(stage, params, None, group_of, forward, batches)
    before, after = flatten(params), flatten(new_params)
    for path, group in group_of.items():
        same = np.array_equal(np.asarray(before[path]), np.asarray(after[path]))
        assert same == (group != "head"), path


def test_frozen_groups_hold_no_optimizer_state():
    params, group_of, forward, _ = setup()
    stage = plans.feature_extraction([g for g, _ in GROUPS]).stages[0]
    tx = make_optimizer(stage, group_of, OPTIM, lambda s: 1e-2)
    slots = group_states(tx.init(flatten(params)))
    assert state_bytes(slots["layer_0"]) == 0 and state_bytes(slots["layer_1"]) == 0
    head_params = 16 * 3 + 3
    assert state_bytes(slots["head"]) >= 2 * 4 * head_params  # Adam's two moments
    rows = audit.audit_stage(stage, group_of, flatten(params), tx.init(flatten(params)))
    assert [(r.group, r.trainable, r.params) for r in rows] == [
        ("layer_0", False, 8 * 16 + 16),
        ("layer_1", False, 16 * 16 + 16),
        ("head", True, head_params),
    ]
    assert "FROZEN" in audit.format_audit(rows, 0, 0)


def test_unfreezing_carries_state_over_and_starts_the_new_group_fresh():
    params, group_of, forward, batches = setup()
    plan = plans.progressive([g for g, _ in GROUPS], every=3)
    first, second = plan.stages[0], plan.stages[1]
    params, state = run_stage(first, params, None, group_of, forward, batches[:3])
    tx2 = make_optimizer(second, group_of, OPTIM, lambda s: 1e-2)
    fresh = tx2.init(flatten(params))
    carried = carry_over(state, fresh, first, second)
    old_head = group_states(state)["head"]
    new_slots = group_states(carried)
    # the head keeps its Adam moments and count; layer_1's state is new (zeros, count 0)
    jax.tree_util.tree_map(np.testing.assert_array_equal, new_slots["head"], old_head)
    adam_1 = new_slots["layer_1"].inner_state[0]
    assert int(adam_1.count) == 0
    assert all(not np.any(np.asarray(x)) for x in jax.tree_util.tree_leaves(adam_1.mu))
    assert state_bytes(new_slots["layer_0"]) == 0
    assert int(carried[1].count) == 3  # the global schedule step carries over
    # and the carried state trains on with the new stage's optimizer
    params2, state2 = run_stage(second, params, carried, group_of, forward, batches[3:], tx2)
    assert int(group_states(state2)["head"].inner_state[0].count) == 6


def test_nonpositive_multiplier_rejected():
    with pytest.raises(plans.PlanError, match="use FROZEN or > 0"):
        plans.Plan("bad", (plans.Stage(0, {"a": 0.0, "b": 1.0}),)).validate(["a", "b"])


def test_slanted_triangular_and_one_cycle_schedules():
    from tlx.transfer.optim import learning_rate_schedule

    stlr = learning_rate_schedule(
        {"learning_rate": 0.01, "decay": "slanted_triangular", "cut_frac": 0.1, "ratio": 32}, 1000
    )
    assert float(stlr(0)) == pytest.approx(0.01 / 32)
    assert float(stlr(100)) == pytest.approx(0.01)  # the peak at cut_frac of the run
    assert float(stlr(50)) == pytest.approx((0.01 / 32 + 0.01) / 2, rel=1e-3)  # linear rise
    assert float(stlr(1000)) == pytest.approx(0.01 / 32, rel=1e-3)
    one = learning_rate_schedule({"learning_rate": 0.01, "decay": "one_cycle"}, 1000)
    assert float(one(300)) == pytest.approx(0.01, rel=1e-3)  # peak after pct_start=0.3
    assert float(one(0)) < 0.001 and float(one(1000)) < 1e-5
    with pytest.raises(ValueError, match="slanted_triangular"):
        learning_rate_schedule({"learning_rate": 0.01, "decay": "triangle"}, 10)


def test_unfreeze_warmup_ramps_each_group_from_its_own_start():
    """With optim.unfreeze_warmup_steps=4, a group's n-th update after it starts training is
    scaled by n/4 (its count restarts when it unfreezes), the others' ramps carry on."""
    params, group_of, forward, batches = setup()
    names = [g for g, _ in GROUPS]
    first, second = plans.progressive(names, every=3).stages[:2]  # head, then + layer_1
    cfg = {**OPTIM, "weight_decay": 0.0, "unfreeze_warmup_steps": 4, "b1": 0.0, "b2": 0.0}

    def updates(stage, opt_state, flat):
        tx = make_optimizer(stage, group_of, cfg, lambda s: 1.0)
        opt_state = tx.init(flat) if opt_state is None else opt_state
        grads = {k: jnp.ones_like(v) for k, v in flat.items()}
        upd, opt_state = tx.update(grads, opt_state, flat)
        return upd, opt_state, tx

    flat = flatten(params)
    sizes = []
    state = None
    for _ in range(2):  # head: updates 1/4 and 2/4 (b1=b2=0: Adam's step is sign-like, 1.0)
        upd, state, tx = updates(first, state, flat)
        sizes.append(float(jnp.abs(upd["Dense_2/kernel"]).mean()))
    np.testing.assert_allclose(sizes, [0.25, 0.5], rtol=1e-3)
    fresh = make_optimizer(second, group_of, cfg, lambda s: 1.0).init(flat)
    state = carry_over(state, fresh, first, second)
    upd, state, _ = updates(second, state, flat)
    np.testing.assert_allclose(float(jnp.abs(upd["Dense_2/kernel"]).mean()), 0.75, rtol=1e-3)
    np.testing.assert_allclose(float(jnp.abs(upd["Dense_1/kernel"]).mean()), 0.25, rtol=1e-3)


def test_per_group_schedules_on_run_and_group_clocks_across_stage_boundaries():
    """head: constant; layer_1: the run's linear decay (no override); layer_0: its own linear
    decay over the steps left after it unfreezes (clock "group"). Every update's size (b1=b2=0:
    Adam's step is sign-like, 1.0 before scaling) equals what learning_rates() logs."""
    from tlx.transfer.optim import StageOptimizers

    params, group_of, _, _ = setup()
    names = [g for g, _ in GROUPS]
    plan = plans.progressive(names, every=3)  # head; + layer_1 at 3; + layer_0 at 6
    cfg = {
        **OPTIM,
        "weight_decay": 0.0,
        "b1": 0.0,
        "b2": 0.0,
        "decay": "linear",
        "group_schedules": {
            "head": {"decay": "constant"},
            "layer_0*": {"decay": "linear", "clock": "group", "learning_rate": 0.02},
        },
    }
    optimizers = StageOptimizers(plan, group_of, cfg, total_steps=9)
    flat = flatten(params)
    grads = {k: jnp.ones_like(v) for k, v in flat.items()}
    kernel = {"head": "Dense_2/kernel", "layer_1": "Dense_1/kernel", "layer_0": "Dense_0/kernel"}
    index, tx = 0, optimizers(0)
    state = tx.init(flat)
    seen = {group: [] for group in kernel}
    for step in range(9):
        if plan.stage_index_at(step) != index:
            old, index = plan.stages[index], plan.stage_index_at(step)
            tx = optimizers(index)
            state = carry_over(state, tx.init(flat), old, plan.stages[index])
        upd, state = tx.update(grads, state, flat)
        logged = optimizers.learning_rates(index, step)
        for group, path in kernel.items():
            size = float(jnp.abs(upd[path]).mean())
            np.testing.assert_allclose(size, logged[group], rtol=1e-4, atol=1e-9)
            seen[group].append(size)
    multiplier = {g: plan.stages[-1].multipliers[g] for g in kernel}
    np.testing.assert_allclose(np.array(seen["head"]) / multiplier["head"], 1e-2, rtol=1e-4)
    run_clock = [1e-2 * (1 - t / 9) for t in range(3, 9)]  # the run's decay from step 3
    np.testing.assert_allclose(
        np.array(seen["layer_1"][3:]) / multiplier["layer_1"], run_clock, rtol=1e-4
    )
    own_clock = [0.02 * (1 - n / 3) for n in range(3)]  # 3 steps left when it unfreezes at 6
    np.testing.assert_allclose(
        np.array(seen["layer_0"][6:]) / multiplier["layer_0"], own_clock, rtol=1e-4
    )
    assert seen["layer_0"][:6] == [0.0] * 6


@pytest.mark.parametrize(
    "group_schedules, message",
    [
        ({"encoder_*": {"decay": "constant"}}, "matches no parameter group"),
        ({"head": {"lr": 0.1}}, r"unknown fields \['lr'\]"),
        ({"head": {"clock": "stage"}}, "expected 'run' or 'group'"),
        ({"head": {"decay": "triangle"}}, "slanted_triangular"),
    ],
)
def test_bad_group_schedules_fail_before_anything_is_built(group_schedules, message):
    from tlx.transfer.optim import StageOptimizers

    _, group_of, _, _ = setup()
    plan = plans.finetune([g for g, _ in GROUPS])
    with pytest.raises(ValueError, match=message):
        StageOptimizers(plan, group_of, {**OPTIM, "group_schedules": group_schedules}, 10)


def test_sgd_follows_torch_sgd_with_momentum_and_weight_decay():
    """optim.optimizer='sgd' is torch.optim.SGD (L2 added to the gradient, then heavy-ball
    momentum) on the decayed parameters; biases are not decayed here (torch decays everything
    unless told), so the check runs on a kernel. Both in float32 over 5 steps: 1e-6 relative."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(4, 3)).astype(np.float32)
    grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(5)]
    optim = {"learning_rate": 0.1, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-2}
    stage = plans.Stage(0, {"head": 1.0})
    tx = make_optimizer(stage, {"w": "head"}, optim, lambda step: 0.1)
    params, state = {"w": jnp.asarray(kernel)}, None
    state = tx.init(params)
    weight = torch.nn.Parameter(torch.from_numpy(kernel.copy()))
    reference = torch.optim.SGD([weight], lr=0.1, momentum=0.9, weight_decay=1e-2)
    for g in grads:
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = {"w": params["w"] + updates["w"]}
        weight.grad = torch.from_numpy(g.copy())
        reference.step()
    np.testing.assert_allclose(params["w"], weight.detach().numpy(), rtol=1e-6, atol=1e-6)
    assert not np.allclose(params["w"], kernel)


def test_an_unknown_optimizer_fails_before_anything_is_built():
    from tlx.transfer.optim import check_schedules

    with pytest.raises(ValueError, match="optim.optimizer='lamb'; expected one of"):
        check_schedules({"learning_rate": 0.1, "optimizer": "lamb"}, ["head"], 10)
