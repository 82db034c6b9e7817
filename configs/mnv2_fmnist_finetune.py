"""MobileNetV2 (ImageNet) -> Fashion-MNIST at 1,000 labels, full fine-tuning (head at 10x the rate).

    python -m tlx.train --config=configs/mnv2_fmnist_finetune.py --workdir=runs/mnv2_finetune

RESULT
"""

from configs.mnv2_fmnist_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "finetune"
    return config
