"""Inception v3 (torchvision's port of Google's ImageNet weights) -> tf_flowers: the top three
Mixed blocks and a new 5-way head train (plan freeze_to, k=4), 299x299 crops, BatchNorm frozen.

    python -m tlx.train --config=configs/inception_v3_flowers_freeze_to.py --workdir=runs/iv3_flowers

Needs a machine that can download (see configs/flowers_base.py); not run here (no network). For
Keras' weights ([-1, 1] inputs, set by the catalog): --config.model.checkpoint=keras:inception_v3.
"""

from configs.flowers_base import base_config


def get_config(arg=None):
    config = base_config()
    config.model.checkpoint = "torchvision:inception_v3"
    config.plan.k = 4  # Mixed_7a, Mixed_7b, Mixed_7c, head
    return config
