"""Sections every experiment config shares: the plan and the optimizer, with their defaults.

Each family's base config calls these and sets only what differs (e.g. `optim_section(
learning_rate=3e-4)`); a plan config then picks the plan and its fields.
"""

import importlib
import json
from collections.abc import Mapping, Sequence

import ml_collections

from tlx.spec import dotted_leaves


def run_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The run settings most experiments leave at their defaults, spelled out so a config shows
    every knob: no init_from, no feature cache, one step per call, no gradient accumulation, jit
    over every device with nothing split, no extra XLA flags."""
    config.init_from = ""
    config.feature_cache = "off"
    config.steps_per_call = 1
    config.grad_accum_steps = 1
    config.parallel = "jit"
    config.sharding = ml_collections.ConfigDict({"model_axis": 1, "rules": ""})
    config.xla_flags = ""
    return config


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
    optim.optimizer = "adamw"  # adamw | sgd
    optim.momentum = 0.9  # sgd only
    optim.learning_rate = 1e-4
    optim.warmup_steps = 20
    optim.decay = "cosine"  # cosine | linear | constant | one_cycle | slanted_triangular
    optim.final_fraction = 0.0
    optim.weight_decay = 0.01
    optim.b1 = 0.9
    optim.b2 = 0.999
    optim.eps = 1e-8
    optim.clip_norm = 1.0
    # SGD with decay one_cycle: momentum cycling max_momentum -> base_momentum -> max, opposite to
    # the rate (torch's OneCycleLR default); decay_vectors: weight decay on every trained tensor,
    # biases included (torch's SGD), not only on matrices.
    optim.cycle_momentum = False
    optim.base_momentum = 0.85
    optim.max_momentum = 0.95
    optim.decay_vectors = False
    # Each group's own linear warm-up over this many steps from when it starts training (0: off).
    optim.unfreeze_warmup_steps = 0
    # Per-group schedules: {group or fnmatch pattern: {field: value}} overriding learning_rate,
    # warmup_steps, decay, final_fraction, pct_start, cut_frac or ratio for the groups it matches,
    # and `clock`: "run" (the whole run's steps, the default) or "group" (from the group's first
    # trained step to the end). E.g. {"head": {"decay": "constant"}}.
    optim.group_schedules = ml_collections.ConfigDict()
    optim.update(overrides)
    return optim


def peft_section(**overrides) -> ml_collections.ConfigDict:
    """Parameter-efficient transfer (tlx.peft): off by default; the fields the command line can
    set, e.g. --config.peft.method=lora --config.peft.targets='attention/self/(query|value)'."""
    peft = ml_collections.ConfigDict()
    peft.method = "none"  # "none" | "lora" | "bitfit" | "adapters" | "prompt"
    peft.targets = ""  # lora: a regex searched in kernel paths; adapters: in dense module paths
    peft.rank = 8
    peft.alpha = 16.0  # the update is scaled by alpha / rank
    peft.dropout = 0.0  # on the LoRA branch's input
    peft.init = "kaiming"  # A's initialisation: "kaiming" (PEFT's default) or "gaussian"
    peft.bottleneck = 64  # adapters: each adapter's hidden width
    peft.prompt_tokens = 20  # prompt: learned vectors inserted after [CLS]
    peft.update(overrides)
    return peft


def selection_section(**overrides) -> ml_collections.ConfigDict:
    """Model selection on validation (tlx.selection): off by default, i.e. the last step is the
    one reported; e.g. metric="accuracy", patience=5 keeps the best evaluation and stops after 5
    evaluations without improvement."""
    selection = ml_collections.ConfigDict()
    selection.metric = ""  # "accuracy" | "loss" (of data.eval_split); "": the last step
    selection.mode = ""  # "max" | "min"; "": min for a loss, max otherwise
    selection.patience = 0  # evaluations without improvement before stopping; 0: never
    selection.min_delta = 0.0  # the least change that counts as an improvement
    selection.update(overrides)
    return selection


def select_best_of(config: ml_collections.ConfigDict, every: int) -> ml_collections.ConfigDict:
    """Evaluate (and checkpoint) every `every` steps and report the best validation accuracy,
    never stopping early: a plan's schedule runs to its end (configs/*_ablation_selected.py)."""
    config.eval_every = config.checkpoint_every = every
    config.keep_checkpoints = 1
    config.selection.metric = "accuracy"
    config.selection.patience = 0
    return config


def as_one_fit(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A classical baseline's config (tlx.baselines): every config has the neural fields (batch
    size, plan, optimizer, step cadence); a baseline reads none of them. It is one fit:
    summary.json's steps echo total_steps, so a sweep counts the cell finished."""
    config.plan.name = "classical"
    config.total_steps = 1
    config.eval_every = config.checkpoint_every = config.log_every = 1
    config.optim.warmup_steps = 0  # must be below total_steps
    return config


# --- the strategy ablation (research-workflow issue) ---------------------------------------------
# Every transfer strategy tlx has, plus training from scratch, as one sweep string: each strategy a
# zipped group of config fields keyed by a `strategy` label (recorded in config.json; aggregate with
# `experiments.aggregate --group_by=strategy`). Used by configs/*_ablation.py.


def strategy_rows(
    *,
    k_values: tuple[int, int],
    learning_rate: float,
    warmup_steps: int,
    scratch: Mapping[str, object],
) -> dict[str, dict[str, object]]:
    """strategy -> {config field: value}. Every strategy sets every field, so a cell never
    inherits another strategy's value; `scratch` holds the family's from-scratch settings
    (random weights, its own learning rate, trained BatchNorm statistics where there are any)."""
    low, high = sorted(k_values)
    common = {
        "plan.k": high,
        "plan.layer_decay": 1.0,
        "plan.lr_multipliers": "head=10",  # the fresh head learns faster
        "optim.decay": "cosine",
        "optim.warmup_steps": warmup_steps,
        "optim.learning_rate": learning_rate,
        "model.random_init": False,
    }
    rows = {
        "feature_extraction": {"plan.name": "feature_extraction"},
        f"freeze_to_{low}": {"plan.name": "freeze_to", "plan.k": low},
        f"freeze_to_{high}": {"plan.name": "freeze_to"},
        "finetune": {"plan.name": "finetune"},
        "progressive": {"plan.name": "progressive"},
        # Discriminative rates: each group 2x slower than the one above it.
        "discriminative": {"plan.name": "finetune", "plan.layer_decay": 0.5},
        # ULMFiT: gradual unfreezing, layer decay 1/2.6, slanted triangular (its rise warms up).
        "ulmfit": {
            "plan.name": "progressive",
            "plan.layer_decay": round(1 / 2.6, 6),
            "optim.decay": "slanted_triangular",
            "optim.warmup_steps": 0,
        },
        "scratch": {"plan.name": "finetune", "plan.lr_multipliers": "", **scratch},
    }
    # Fields only the scratch row names (e.g. model.batchnorm) keep the transfer runs' value.
    transfer_defaults = {**common, "model.batchnorm": "frozen"}
    keys = sorted({k for row in rows.values() for k in row} | set(common))
    return {
        name: {k: row[k] if k in row else transfer_defaults[k] for k in keys}
        for name, row in rows.items()
    }


def peft_rows(
    *,
    learning_rate: float,
    head_rate: float,
    lora_targets: str,
    lora_rate: float,
    bitfit_rate: float,
    more: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, dict[str, object]]:
    """strategy -> every swept field of a parameter-efficient study (issue 25): finetune at the
    family's `learning_rate`, feature extraction, LoRA at ranks 4 / 8 / 16 on `lora_targets`
    (alpha = 2r, so every rank updates at the same scale), BitFit, and `more` (rows of methods
    only some models have: adapters, prompts). A method that trains few parameters takes a larger
    step (its own rate); the fresh head learns at `head_rate` in every row."""

    def head_at(rate: float) -> dict[str, object]:
        return {"optim.learning_rate": rate, "plan.lr_multipliers": f"head={head_rate / rate:g}"}

    common = {
        "plan.name": "finetune",
        "peft.method": "none",
        "peft.targets": "",
        "peft.rank": 8,
        "peft.alpha": 16.0,
        **head_at(learning_rate),
    }

    def lora(rank: int) -> dict[str, object]:
        return {
            "peft.method": "lora",
            "peft.targets": lora_targets,
            "peft.rank": rank,
            "peft.alpha": 2.0 * rank,
            **head_at(lora_rate),
        }

    rows = {
        "finetune": {},
        "feature_extraction": {"plan.name": "feature_extraction"},
        **{f"lora_r{rank}": lora(rank) for rank in (4, 8, 16)},
        "bitfit": {"peft.method": "bitfit", **head_at(bitfit_rate)},
    }
    for name, row in (more or {}).items():
        rate = row.get("optim.learning_rate", learning_rate)
        rows[name] = {**row, **head_at(rate)}
    return {name: {**common, **row} for name, row in rows.items()}


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)


def strategy_sweep(
    rows: Mapping[str, Mapping[str, object]], seeds=(0, 1, 2), seeds_first: bool = False
) -> str:
    """`(strategy,field,...)=[('name',v,...),...];seed=[0,1,2]` for experiments.sweep.

    seeds_first puts the seed outermost: every strategy runs seed 0 before any runs seed 1, so a
    sweep stopped early still compares every strategy. It also names the cells `seed=0,strategy=..`.
    """
    fields = list(next(iter(rows.values())))
    cells = ",".join(
        "(" + ",".join(_literal(v) for v in (name, *(row[f] for f in fields))) + ")"
        for name, row in rows.items()
    )
    strategy_axis = f"(strategy,{','.join(fields)})=[{cells}]"
    seed_axis = f"seed=[{','.join(map(str, seeds))}]"
    return f"{seed_axis};{strategy_axis}" if seeds_first else f"{strategy_axis};{seed_axis}"


# --- every plan config of a family as one sweep (configs/*_plans.py) ------------------------------


def _set(config: ml_collections.ConfigDict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        if part not in node:
            node[part] = ml_collections.ConfigDict()
        node = node[part]
    node[leaf] = value


def plans_sweep(family: str, plans: Sequence[str]) -> ml_collections.ConfigDict:
    """configs/<family>_<plan>.py for each plan as one sweep config: the first plan's config with
    every field another plan adds, and a `sweep` of one cell per plan, labelled `strategy`."""
    configs = {p: importlib.import_module(f"configs.{family}_{p}").get_config() for p in plans}
    flats = {p: dotted_leaves(c.to_dict()) for p, c in configs.items()}
    config, shared = configs[plans[0]], dict(flats[plans[0]])
    for flat in flats.values():
        for key, value in flat.items():
            if key not in shared:  # a field only some plans have: the same in every cell
                _set(config, key, value)
                shared[key] = value
    varied = [
        key
        for key in sorted(shared)
        if len({json.dumps(f.get(key, shared[key]), sort_keys=True) for f in flats.values()}) > 1
    ]
    rows = {p: {key: flats[p].get(key, shared[key]) for key in varied} for p in plans}
    config.strategy = plans[0]  # a label for the aggregation; the swept fields decide the run
    config.sweep = strategy_sweep(rows, seeds=(config.seed,))
    return config
