"""The plan configs of all-MiniLM-L6-v2 -> Rotten Tomatoes as one sweep: feature extraction,
freeze_to(3), finetune, progressive and ULMFiT (configs/minilm_rt_<plan>.py), seed 0, one run each.

    python -m experiments.sweep --config=configs/minilm_rt_plans.py --workdir=runs/plans
    python -m experiments.aggregate --workdir=runs/plans --group_by=strategy

Each cell trains exactly the config `python -m tlx.train --config=configs/minilm_rt_<plan>.py`
builds: the fields where the plan configs differ form a zipped group labelled `strategy` (the
plan's name), and a field only some of them set (ULMFiT's slanted-triangular cut_frac and ratio)
is set in every cell, read only where its schedule is used. The table gives each plan's test and
validation accuracy, train seconds (compilation and evaluation included), examples/s and peak
memory. The results in the plan configs' docstrings and experiments/results/minilm_rt_plans.md
and minilm_rt_ulmfit.md were measured with these configs one `tlx.train` process per plan.
"""

import importlib
import json
from collections.abc import Mapping, Sequence

import ml_collections

from configs.common import strategy_sweep

PLANS = ("feature_extraction", "freeze_to", "finetune", "progressive", "ulmfit")


def _flat(tree: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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
    flats = {p: _flat(c.to_dict()) for p, c in configs.items()}
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


def get_config(arg=None):
    return plans_sweep("minilm_rt", PLANS)
