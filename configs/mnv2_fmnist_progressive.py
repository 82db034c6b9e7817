"""MobileNetV2 (ImageNet) -> Fashion-MNIST at 1,000 labels, progressive unfreezing from the top:
the head first, then one more group every `plan.every` steps (10 groups: all train by step 540).

    python -m tlx.train --config=configs/mnv2_fmnist_progressive.py --workdir=runs/mnv2_progressive

Result (2-core AMD EPYC CPU, 2026-11-26, one `tlx.train` process; the `strategy=progressive` cell
of `python -m experiments.sweep --config=configs/mnv2_fmnist_plans.py --workdir=runs/mnv2_plans`):
test accuracy 0.8458 (scratch: 0.7492), validation 0.8538, wall time 4.7 min (10 stages, each compiled).
"""

from configs.mnv2_fmnist_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "progressive"
    config.plan.every = 60
    return config
