"""The plan configs of MobileNetV2 (ImageNet) -> Fashion-MNIST at 1,000 labels as one sweep: from
scratch, feature extraction, finetune, freeze_to(4) and progressive
(configs/mnv2_fmnist_<plan>.py), seed 0, one run each.

    python -m experiments.sweep --config=configs/mnv2_fmnist_plans.py --workdir=runs/mnv2_plans
    python -m experiments.aggregate --workdir=runs/mnv2_plans --group_by=strategy

Each cell trains exactly the config `python -m tlx.train --config=configs/mnv2_fmnist_<plan>.py`
builds (see configs/minilm_rt_plans.py). The results in the plan configs' docstrings and
experiments/results/mnv2_fmnist_plans.md were measured with these configs one `tlx.train` process
per plan.
"""

from configs.common import plans_sweep

PLANS = ("scratch", "feature_extraction", "finetune", "freeze_to", "progressive")


def get_config(arg=None):
    return plans_sweep("mnv2_fmnist", PLANS)
