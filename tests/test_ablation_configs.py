"""The declared research sweeps (strategy ablations, data efficiency): they parse, name distinct
cells, and every cell builds a valid experiment (plan against the real model's groups) before
anything is run."""

import pytest

from experiments import sweep as sw
from experiments.sweep.fields import apply
from tlx.experiment import build_experiment

ABLATIONS = {
    "configs/mnv2_fmnist_ablation.py": {"freeze_to_2", "freeze_to_5"},
    "configs/minilm_rt_ablation.py": {"freeze_to_2", "freeze_to_4"},
}
SEEDS_FIRST = {"configs/minilm_rt_ablation.py"}  # every strategy's seed 0 before any seed 1
COMMON = {
    "feature_extraction", "finetune", "progressive", "discriminative", "ulmfit", "scratch",
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(ABLATIONS))
def test_ablation_sweep_builds_every_strategy(path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = sw.plan_sweep(path, None, tmp_path)
    assert len(plan.cells) == 24 and len({c.name for c in plan.cells}) == 24
    strategies = {c.overrides["strategy"] for c in plan.cells}
    assert strategies == COMMON | ABLATIONS[path]
    # a zipped group is named by its label: runs/<sweep>/strategy=ulmfit,seed=2
    if path in SEEDS_FIRST:
        names = {f"seed={seed},strategy={s}" for s in strategies for seed in (0, 1, 2)}
        assert {c.overrides["seed"] for c in plan.cells[:8]} == {0}
    else:
        names = {f"strategy={s},seed={seed}" for s in strategies for seed in (0, 1, 2)}
    assert {c.name for c in plan.cells} == names
    config = sw.load_config(path)
    for cell in plan.cells:
        if cell.overrides["seed"] != 0:
            continue
        exp = build_experiment(apply(config, cell.overrides), with_data=False)
        scratch = cell.overrides["strategy"] == "scratch"
        assert (exp.model.pretrained is None) == scratch, cell.name
        first = exp.plan.stages[0]
        if cell.overrides["strategy"] == "feature_extraction":
            assert set(first.trainable) == {"head"}
        if cell.overrides["strategy"] == "discriminative":  # lower groups learn slower
            rates = [first.multipliers[g] for g in exp.group_names]
            assert rates[0] < rates[-2] < rates[-1]


@pytest.mark.parametrize(
    "path", ["configs/mnv2_fmnist_data_efficiency.py", "configs/minilm_rt_data_efficiency.py"]
)
def test_data_efficiency_sweep_builds_transfer_and_scratch_at_every_label_count(
    path, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = sw.plan_sweep(path, None, tmp_path)
    assert len(plan.cells) == 30 and len({c.name for c in plan.cells}) == 30
    labels = {c.overrides["data.train_examples"] for c in plan.cells}
    assert labels == {100, 300, 1000, 3000, 0}
    # seeds outermost: the first 10 cells draw both whole curves once
    first = plan.cells[:10]
    assert {c.overrides["seed"] for c in first} == {0}
    assert len({(c.overrides["strategy"], c.overrides["data.train_examples"]) for c in first}) == 10
    config = sw.load_config(path)
    for strategy in ("transfer", "scratch"):
        cell = next(c for c in plan.cells if c.overrides["strategy"] == strategy)
        exp = build_experiment(apply(config, cell.overrides), with_data=False)
        assert (exp.model.pretrained is None) == (strategy == "scratch")


PLAN_SWEEPS = {
    "configs/minilm_rt_plans.py": "minilm_rt",
    "configs/mnv2_fmnist_plans.py": "mnv2_fmnist",
}
# Not plan configs: the sweeps, and the classical baselines (tlx.baselines; their own sweeps,
# configs/*_classical.py, keep these strategy sweeps' published cells as they are).
NOT_PLANS = {
    "base",
    "ablation",
    "ablation_selected",
    "data_efficiency",
    "plans",
    "classical",
    "tfidf",
    "pixel_logreg",
    "converged",
    "source",  # the source runs of the adaptation study (configs/adapt_rt_airline.py)
    "peft",  # the parameter-efficient study (issue 25), a sweep over config.peft, not a plan
}
ADDED = {"strategy", "sweep", "optim.cut_frac", "optim.ratio"}  # unread where their plan is not


def flat(config, prefix=""):
    out = {}
    for key, value in config.items():
        if hasattr(value, "items") and len(value):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("path", sorted(PLAN_SWEEPS))
def test_plans_sweep_trains_each_plan_config_as_it_stands(path, tmp_path, monkeypatch):
    """The sweep that replaced experiments.compare_plans: one cell per configs/<family>_<plan>.py,
    each cell's config equal to that plan config's, field by field."""
    import importlib
    import pathlib

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    family = PLAN_SWEEPS[path]
    on_disk = {
        p.stem.removeprefix(f"{family}_")
        for p in (pathlib.Path(__file__).parents[1] / "configs").glob(f"{family}_*.py")
    } - NOT_PLANS
    plan = sw.plan_sweep(path, None, tmp_path)
    assert {c.overrides["strategy"] for c in plan.cells} == on_disk
    assert len(plan.cells) == len(on_disk) and {c.overrides["seed"] for c in plan.cells} == {0}
    config = sw.load_config(path)
    for cell in plan.cells:
        strategy = cell.overrides["strategy"]
        expected = flat(importlib.import_module(f"configs.{family}_{strategy}").get_config())
        got = flat(apply(config, cell.overrides))
        assert {k: got.get(k) for k in expected} == expected, strategy
        assert set(got) - set(expected) <= ADDED, strategy
        assert cell.name == f"strategy={strategy},seed=0"


def trained_backbone_share(exp) -> float:
    """The share of the model's parameters its first stage trains, the head left out."""
    import jax

    from tlx.run_start import optimizer_labels
    from tlx.transfer.groups import assign_groups
    from tlx.tree import flatten

    shapes = flatten(jax.eval_shape(exp.model.init, jax.random.key(0))["params"])
    _, labels = optimizer_labels(exp, assign_groups(list(shapes), exp.model.groups), shapes, {})
    trained = set(exp.plan.stages[0].trainable)
    backbone = sum(
        shapes[p].size
        for p, g in labels.items()
        if g in trained and not p.startswith("classifier/")
    )
    return backbone / sum(s.size for s in shapes.values())


def seed_0_shares(path: str, strategies: int, tmp_path) -> dict[str, float]:
    """A PEFT study's strategy -> trained backbone share, from its seed-0 cells; checks the sweep
    holds `strategies` x 3 seeds of distinct cells."""
    plan = sw.plan_sweep(path, None, tmp_path)
    assert len(plan.cells) == 3 * strategies == len({c.name for c in plan.cells})
    config = sw.load_config(path)
    shares = {}
    for cell in plan.cells[:strategies]:  # seeds outermost: seed 0 of every strategy
        exp = build_experiment(apply(config, cell.overrides), with_data=False)
        shares[cell.overrides["strategy"]] = trained_backbone_share(exp)
    assert shares["finetune"] > 0.99 and shares["feature_extraction"] == 0
    return shares


def test_the_peft_study_builds_every_method_with_its_trainable_share(tmp_path, monkeypatch):
    """configs/minilm_rt_peft.py: 8 strategies x 3 seeds; each cell's experiment trains what its
    method says (LoRA: under 1% of MiniLM's parameters besides the head)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shares = seed_0_shares("configs/minilm_rt_peft.py", 8, tmp_path)
    assert 0 < shares["lora_r4"] < shares["lora_r8"] < shares["lora_r16"] < 0.01
    assert 0 < shares["prompt"] < shares["bitfit"] < 0.01 and 0 < shares["adapters"] < 0.05


def test_the_mobilenet_peft_study_trains_pointwise_lora_and_biases(tmp_path, monkeypatch):
    """configs/mnv2_fmnist_peft.py: 6 strategies x 3 seeds; LoRA on the pointwise convolutions
    trains a share that grows with the rank, BitFit only the biases, both well under fine-tuning."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shares = seed_0_shares("configs/mnv2_fmnist_peft.py", 6, tmp_path)
    assert 0 < shares["bitfit"] < shares["lora_r4"] < shares["lora_r8"] < shares["lora_r16"] < 0.2
