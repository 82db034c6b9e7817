"""MobileNetV2 (ImageNet) -> Fashion-MNIST at 1,000 labels, partial fine-tuning: the top `plan.k`
groups train (k=4: head, last_conv, stage_7, stage_6).

    python -m tlx.train --config=configs/mnv2_fmnist_freeze_to.py --workdir=runs/mnv2_freeze_to

Result (2-core AMD EPYC CPU, 2026-11-26, one `tlx.train` process; the `strategy=freeze_to` cell
of `python -m experiments.sweep --config=configs/mnv2_fmnist_plans.py --workdir=runs/mnv2_plans`):
test accuracy 0.8474 (scratch: 0.7492), validation 0.8553, wall time 2.0 min (train 90 s).
"""

from configs.mnv2_fmnist_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "freeze_to"
    config.plan.k = 4
    return config
