"""Issue 23's measured study: tlx's Faster R-CNN fine-tune on FashionDet (ImageNet MobileNetV2
backbone) against the same detector from random init, 3 seeds (6 runs); the torchvision
reference with the same recipe runs beside it (experiments.frcnn_reference, same seeds).

    python -m experiments.sweep --config=configs/faster_rcnn_fashiondet_study.py --workdir=runs/frcnn_study
    python -m experiments.aggregate --workdir=runs/frcnn_study --group_by=strategy --over=seed \\
        --metric=test_mAP --paired_against=strategy=pretrained --out=experiments/results/frcnn_fashiondet
    python -m experiments.frcnn_reference --seeds=0,1,2 --out=experiments/results/frcnn_reference
    python -m experiments.frcnn_reference --seeds=0,1,2 --random_init --out=experiments/results/frcnn_reference_scratch

Goals (issue 23): the fine-tune's test mAP within 2 points of torchvision's (0.508 measured once
on 200 test scenes), at least 30 AP50 points above random init. Both arms: the recipe of
configs/faster_rcnn_fashiondet.py, 400 steps of 8 scenes, selected on validation mAP (200
scenes), tested on 200; scratch trains all its layers (the reference's scratch row froze the
same blocks as its fine-tune). Seeds outermost: a stopped sweep has both arms' first seeds.
"""

from configs.common import strategy_sweep
from configs.faster_rcnn_fashiondet import get_config as fashiondet_config

# Scratch trains every group (plan finetune): frozen random layers would handicap it.
# pretrained_fixed_bn keeps every BatchNorm scale and bias fixed as torchvision's
# FrozenBatchNorm2d does; "frozen" trains them in the training groups. pretrained_torch_recipe
# also takes torch's optimizer as the reference runs it: OneCycleLR's momentum cycling
# (0.95 -> 0.85 -> 0.95) and SGD's weight decay on biases (tests/transfer/test_sgd_one_cycle.py).
FIELDS = (
    "model.random_init",
    "plan.name",
    "model.batchnorm",
    "optim.cycle_momentum",
    "optim.decay_vectors",
)
ROWS = {
    name: dict(zip(FIELDS, values))
    for name, values in {
        "pretrained": (False, "freeze_to", "frozen", False, False),
        "scratch": (True, "finetune", "frozen", False, False),
        "pretrained_fixed_bn": (False, "freeze_to", "fixed", False, False),
        "pretrained_torch_recipe": (False, "freeze_to", "fixed", True, True),
    }.items()
}  # fmt: skip


def get_config(arg=None):
    config = fashiondet_config()
    config.strategy = "pretrained"  # the row label; the swept fields decide the run
    config.sweep = strategy_sweep(ROWS, seeds_first=True)
    return config
