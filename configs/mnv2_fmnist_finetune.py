"""MobileNetV2 (ImageNet) -> Fashion-MNIST at 1,000 labels, full fine-tuning (head at 10x the rate).

    python -m tlx.train --config=configs/mnv2_fmnist_finetune.py --workdir=runs/mnv2_finetune

Result (2-core AMD EPYC CPU, 2026-11-26, one `tlx.train` process; the `strategy=finetune` cell
of `python -m experiments.sweep --config=configs/mnv2_fmnist_plans.py --workdir=runs/mnv2_plans`):
test accuracy 0.8633 (scratch: 0.7492, +11.4 points), validation 0.8687, wall time 5.6 min.
"""

from configs.mnv2_fmnist_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "finetune"
    return config
