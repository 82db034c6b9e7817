"""VGG16 (torchvision ImageNet weights) -> tf_flowers, the classic recipe: the convolutional blocks
stay frozen, fc6, fc7 and a new 5-way head train (plan freeze_to, k=3), 224x224 crops.

    python -m tlx.train --config=configs/vgg16_flowers_freeze_to.py --workdir=runs/vgg16_flowers

Needs a machine that can download (see configs/flowers_base.py); not run here (no network). For
Keras' weights (caffe-style BGR inputs, set by the catalog): --config.model.checkpoint=keras:vgg16.
"""

from configs.flowers_base import base_config


def get_config(arg=None):
    config = base_config()
    config.model.checkpoint = "torchvision:vgg16"
    config.plan.k = 3  # fc6, fc7, head
    # On this CPU, VGG's convolution gradients run faster on Eigen than on YNNPACK (train step
    # 0.82x -> 0.99x PyTorch's; experiments/results/speed_vs_torch_*); MobileNetV2 is the reverse.
    config.xla_flags = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
    return config
