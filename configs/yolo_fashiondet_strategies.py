"""COCO YOLOv3-tiny -> FashionDet by transfer strategy, against scratch, 3 seeds (15 runs).

    python -m experiments.sweep --config=configs/yolo_fashiondet_strategies.py \\
        --workdir=runs/yolo_fashiondet_strategies
    python -m experiments.aggregate --workdir=runs/yolo_fashiondet_strategies \\
        --group_by=strategy --over=seed --metric=test_mAP --paired_against=strategy=finetune \\
        --out=experiments/results/yolo_fashiondet_strategies

Strategies (tlx.transfer.plans over the groups backbone, neck, head_0, head_1): feature extraction
(the two heads train), freeze_to (neck and heads), finetune (all, heads at 10x), progressive
(heads first, then the neck, then the backbone, every 250 steps), and the same network from random
init. 1,000 steps of 16 scenes at 160 px each, selected on validation mAP (configs/yolo_fashiondet.py).
"""

from configs.common import strategy_sweep
from configs.yolo_fashiondet import get_config as fashiondet_config

ROWS = {
    "feature_extraction": {"plan.name": "feature_extraction", "model.random_init": False},
    "freeze_to": {"plan.name": "freeze_to", "model.random_init": False},
    "finetune": {"plan.name": "finetune", "model.random_init": False},
    "progressive": {"plan.name": "progressive", "model.random_init": False},
    "scratch": {"plan.name": "finetune", "model.random_init": True},
}


def get_config(arg=None):
    config = fashiondet_config()
    config.strategy = "finetune"
    config.plan.k = 3  # freeze_to: neck, head_0, head_1
    config.plan.start = 2  # progressive: the two heads from step 0 ...
    config.plan.every = 250  # ... then one more group every 250 steps
    config.sweep = strategy_sweep(ROWS, seeds_first=True)
    return config
