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

from configs.common import plans_sweep

PLANS = ("feature_extraction", "freeze_to", "finetune", "progressive", "ulmfit")


def get_config(arg=None):
    return plans_sweep("minilm_rt", PLANS)
