"""MobileNetV2 (ImageNet) -> Fashion-MNIST at 1,000 labels, feature extraction: only the head trains.

    python -m tlx.train --config=configs/mnv2_fmnist_feature_extraction.py --workdir=runs/mnv2_fe

Result (2-core AMD EPYC CPU, 2026-11-26, one `tlx.train` process; the `strategy=feature_extraction` cell
of `python -m experiments.sweep --config=configs/mnv2_fmnist_plans.py --workdir=runs/mnv2_plans`):
test accuracy 0.7964 (scratch: 0.7492), validation 0.8140, wall time 1.6 min (train 66 s).
"""

from configs.mnv2_fmnist_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "feature_extraction"
    config.plan.lr_multipliers = ""  # only the head trains; the base rate is its rate
    config.optim.learning_rate = 1e-2
    return config
