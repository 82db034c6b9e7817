"""MobileNetV2 (ImageNet) -> Fashion-MNIST at 1,000 labels, progressive unfreezing from the top:
the head first, then one more group every `plan.every` steps (10 groups: all train by step 540).

    python -m tlx.train --config=configs/mnv2_fmnist_progressive.py --workdir=runs/mnv2_progressive

RESULT
"""

from configs.mnv2_fmnist_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "progressive"
    config.plan.every = 60
    return config
