"""Sections every experiment config shares: the plan and the optimizer, with their defaults.

Each family's base config calls these and sets only what differs (e.g. `optim_section(
learning_rate=3e-4)`); a plan config then picks the plan and its fields.
"""

import ml_collections


def plan_section(**overrides) -> ml_collections.ConfigDict:
    plan = ml_collections.ConfigDict()
    plan.name = "finetune"
    plan.k = 2  # freeze_to: top k groups train
    plan.every = 36  # progressive: steps between unfreezes
    plan.start = 1  # progressive: groups trainable at step 0
    plan.head = 1  # feature_extraction: groups in the head
    plan.lr_multipliers = "head=10"  # the fresh head learns faster; regex=factor, ...
    plan.layer_decay = 1.0  # lr x decay**depth from the head
    plan.lr_slice = ()  # (low, high): fastai-style factors from the input group to the head
    plan.update(overrides)
    return plan


def optim_section(**overrides) -> ml_collections.ConfigDict:
    optim = ml_collections.ConfigDict()
    optim.learning_rate = 1e-4
    optim.warmup_steps = 20
    optim.decay = "cosine"  # cosine | linear | constant | one_cycle | slanted_triangular
    optim.final_fraction = 0.0
    optim.weight_decay = 0.01
    optim.b1 = 0.9
    optim.b2 = 0.999
    optim.eps = 1e-8
    optim.clip_norm = 1.0
    # Each group's own linear warm-up over this many steps from when it starts training (0: off).
    optim.unfreeze_warmup_steps = 0
    # Per-group schedules: {group or fnmatch pattern: {field: value}} overriding learning_rate,
    # warmup_steps, decay, final_fraction, pct_start, cut_frac or ratio for the groups it matches,
    # and `clock`: "run" (the whole run's steps, the default) or "group" (from the group's first
    # trained step to the end). E.g. {"head": {"decay": "constant"}}.
    optim.group_schedules = ml_collections.ConfigDict()
    optim.update(overrides)
    return optim
