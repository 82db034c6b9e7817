"""The baseline the transfer runs must beat: MobileNetV2 from random init on the same 1,000
Fashion-MNIST labels, same steps and input pipeline, BatchNorm statistics trained.

    python -m tlx.train --config=configs/mnv2_fmnist_scratch.py --workdir=runs/mnv2_scratch

Result (2-core AMD EPYC CPU, 2026-11-26, one `tlx.train` process; the `strategy=scratch` cell
of `python -m experiments.sweep --config=configs/mnv2_fmnist_plans.py --workdir=runs/mnv2_plans`):
test accuracy 0.7492, validation 0.7515, wall time 6.5 min (train 357 s, ~70 examples/s).
"""

from configs.mnv2_fmnist_base import base_config


def get_config(arg=None):
    config = base_config()
    config.model.checkpoint = ""
    config.model.arch = "mobilenet_v2"
    config.model.batchnorm = "train"  # from scratch the statistics must be learned
    config.plan.name = "finetune"
    config.plan.lr_multipliers = ""  # no pretrained body to protect
    config.optim.learning_rate = 1e-3
    return config
