"""SGD on a one-cycle rate is torch's recipe for detection (torch.optim.SGD + OneCycleLR): with
optim.cycle_momentum and optim.decay_vectors, tlx's updates equal torch's step for step, momentum
cycling and weight decay on biases included."""

import numpy as np
import pytest

from tlx.transfer.optim import StageOptimizers, momentum_schedule
from tlx.transfer.plans import Plan, Stage

STEPS, PCT, PEAK, DECAY = 20, 0.3, 0.05, 1e-2


def optim(**fields):
    return {
        "optimizer": "sgd", "learning_rate": PEAK, "decay": "one_cycle", "pct_start": PCT,
        "weight_decay": DECAY, "cycle_momentum": True, "decay_vectors": True, **fields,
    }  # fmt: skip


def gradients():
    rng = np.random.default_rng(0)
    return [
        {
            "w": rng.normal(size=(3, 2)).astype(np.float32),
            "b": rng.normal(size=2).astype(np.float32),
        }
        for _ in range(STEPS)
    ]


def torch_params(cycle_momentum: bool, decay_biases: bool):
    """torch's SGD + OneCycleLR over the same gradients. optax's one-cycle ends its phases at
    steps pct*T and T, torch's at pct*T' - 1 and T' - 1: T' = T + 1 and pct' = (pct*T + 1) / T'
    put torch's boundaries on optax's, so the two schedules agree at every step."""
    import torch

    w = torch.nn.Parameter(torch.ones(3, 2))
    b = torch.nn.Parameter(torch.ones(2))
    groups = [{"params": [w]}, {"params": [b], "weight_decay": DECAY if decay_biases else 0.0}]
    sgd = torch.optim.SGD(groups, lr=PEAK, momentum=0.9, weight_decay=DECAY)
    total = STEPS + 1
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        sgd, max_lr=PEAK, total_steps=total, pct_start=(PCT * STEPS + 1) / total,
        cycle_momentum=cycle_momentum,
    )  # fmt: skip
    for g in gradients():
        w.grad, b.grad = torch.from_numpy(g["w"]), torch.from_numpy(g["b"])
        sgd.step()
        schedule.step()
    return {"w": w.detach().numpy(), "b": b.detach().numpy()}


def tlx_params(**fields):
    import optax

    plan = Plan("one", (Stage(0, {"all": 1.0}),))
    params = {"w": np.ones((3, 2), np.float32), "b": np.ones(2, np.float32)}
    tx = StageOptimizers(plan, {"w": "all", "b": "all"}, optim(**fields), STEPS)(0)
    state = tx.init(params)
    for g in gradients():
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("cycle,vectors", [(True, True), (False, False), (True, False)])
def test_sgd_one_cycle_steps_as_torch(cycle, vectors):
    ours = tlx_params(cycle_momentum=cycle, decay_vectors=vectors)
    theirs = torch_params(cycle, vectors)
    for name in ("w", "b"):  # float32 over 20 steps: agreement to 1e-6 of the weights' scale (1)
        np.testing.assert_allclose(ours[name], theirs[name], atol=1e-6, rtol=0)
    other = tlx_params(cycle_momentum=not cycle, decay_vectors=vectors)
    assert np.abs(other["w"] - theirs["w"]).max() > 1e-4  # the setting makes a difference


def test_momentum_cycles_opposite_to_the_rate():
    from tlx.spec import OptimSpec

    m = momentum_schedule(OptimSpec.of(optim()), 100)
    assert float(m(0)) == pytest.approx(0.95) and float(m(30)) == pytest.approx(0.85)
    assert float(m(100)) == pytest.approx(0.95) and 0.85 < float(m(15)) < 0.95


def test_cycle_momentum_needs_sgd_on_one_cycle():
    plan = Plan("one", (Stage(0, {"all": 1.0}),))
    with pytest.raises(ValueError, match="optimizer='sgd' and decay='one_cycle'"):
        StageOptimizers(plan, {"w": "all"}, optim(decay="cosine"), STEPS)


def test_cycle_momentum_is_refused_before_compute_with_adamw():
    from configs import faster_rcnn_fashiondet
    from tlx.errors import ConfigError
    from tlx.spec import read_spec

    config = faster_rcnn_fashiondet.get_config()
    config.optim.cycle_momentum = True
    read_spec(config)  # SGD on one_cycle: accepted
    config.optim.optimizer = "adamw"
    with pytest.raises(ConfigError, match="optimizer='sgd' and decay='one_cycle'"):
        read_spec(config)
