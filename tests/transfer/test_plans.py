import pytest

from tlx.transfer import plans
from tlx.transfer.groups import GroupError, assign_groups
from tlx.transfer.plans import FROZEN, PlanError

GROUPS = ["embeddings", "layer_0", "layer_1", "layer_2", "head"]


def trainable(plan, step):
    return plan.stage_at(step).trainable


def test_feature_extraction_trains_only_the_head():
    plan = plans.feature_extraction(GROUPS)
    assert trainable(plan, 0) == ("head",)
    assert len(plan.stages) == 1


def test_finetune_trains_everything():
    assert trainable(plans.finetune(GROUPS), 0) == tuple(GROUPS)


def test_freeze_to_trains_top_k():
    assert trainable(plans.freeze_to(GROUPS, 2), 0) == ("layer_2", "head")


@pytest.mark.parametrize("k", [0, 5, 7])
def test_freeze_to_rejects_k_that_freezes_nothing_or_trains_nothing(k):
    with pytest.raises(PlanError, match="between 1 and 4"):
        plans.freeze_to(GROUPS, k)


def test_progressive_unfreezes_one_group_from_the_top_at_each_boundary():
    plan = plans.progressive(GROUPS, every=10)
    assert plan.boundaries == (0, 10, 20, 30, 40)
    assert trainable(plan, 9) == ("head",)
    assert trainable(plan, 10) == ("layer_2", "head")
    assert trainable(plan, 39) == ("layer_0", "layer_1", "layer_2", "head")
    assert trainable(plan, 40) == tuple(GROUPS)
    assert trainable(plan, 10_000) == tuple(GROUPS)


def test_progressive_stage_past_the_end_is_an_error():
    cfg = {"name": "progressive", "every": 30, "start": 1}
    plans.build_plan(GROUPS, cfg, total_steps=121)  # last stage at 120 < 121: fine
    with pytest.raises(PlanError, match="would never begin"):
        plans.build_plan(GROUPS, cfg, total_steps=100)


def test_from_rules_first_match_wins_and_all_problems_reported():
    plan = plans.from_rules(GROUPS, [(0, [("head", 2.0), (".*", None)]), (5, [(".*", 1.0)])])
    assert plan.stages[0].multipliers == {**dict.fromkeys(GROUPS[:-1], FROZEN), "head": 2.0}
    assert trainable(plan, 5) == tuple(GROUPS)
    with pytest.raises(PlanError) as err:
        plans.from_rules(GROUPS, [(0, [("head", 1.0), ("decoder_.*", None)])])
    message = str(err.value)
    assert "'decoder_.*' matches no group" in message
    assert "group 'embeddings' matches no rule" in message  # both problems in one error


def test_multipliers_and_layer_decay():
    plan = plans.build_plan(
        GROUPS,
        {"name": "freeze_to", "k": 3, "lr_multipliers": "head=10", "layer_decay": 0.5},
    )
    m = plan.stages[0].multipliers
    assert m["head"] == 10.0 and m["layer_2"] == 0.5 and m["layer_1"] == 0.25
    assert m["layer_0"] is FROZEN and m["embeddings"] is FROZEN


def test_multiplier_pattern_matching_nothing_is_an_error():
    with pytest.raises(PlanError, match="matches no group"):
        plans.build_plan(GROUPS, {"name": "finetune", "lr_multipliers": "decoder=2"})


def test_unknown_plan_name():
    with pytest.raises(PlanError, match="Unknown plan 'unfreeze_all'"):
        plans.build_plan(GROUPS, {"name": "unfreeze_all"})


def test_assign_groups_reports_every_problem():
    paths = ["bert/embeddings/w", "bert/layer_0/w", "classifier/kernel", "extra/w"]
    groups = [
        ("embeddings", "embeddings/"),
        ("layers", "layer_|embeddings"),
        ("head", "^classifier/"),
        ("pooler", "pooler/"),
    ]
    with pytest.raises(GroupError) as err:
        assign_groups(paths, groups)
    message = str(err.value)
    assert "bert/embeddings/w: matches several groups" in message
    assert "extra/w: matches no group" in message
    assert "group 'pooler'" in message and "matches no parameter" in message


def test_lr_slice_spaces_factors_geometrically_from_input_to_head():
    from tlx.transfer.plans import finetune, with_multipliers

    groups = ["embeddings", "layer_0", "layer_1", "head"]
    plan = with_multipliers(finetune(groups), groups, lr_slice=(0.001, 1.0))
    mults = plan.stages[0].multipliers
    assert mults["head"] == pytest.approx(1.0)
    assert mults["embeddings"] == pytest.approx(0.001)
    assert mults["layer_0"] == pytest.approx(0.01)
    assert mults["layer_1"] == pytest.approx(0.1)
    with pytest.raises(PlanError, match="lr_slice"):
        with_multipliers(finetune(groups), groups, lr_slice=(1.0, 0.1))
