"""COCO YOLOv3-tiny -> tree crowns against the same network from random init, same steps,
3 seeds (6 runs): does COCO pretraining help on aerial images of an unseen site?

    python -m experiments.sweep --config=configs/yolo_trees_study.py --workdir=runs/yolo_trees_study
    python -m experiments.aggregate --workdir=runs/yolo_trees_study --group_by=strategy \\
        --over=seed --metric=test_mAP --paired_against=strategy=pretrained \\
        --out=experiments/results/yolo_trees

Both arms: 600 steps of 8 tiles (416 px), selected on validation mAP (the bottom fifth of the YELL
crops), tested on OSBS and SOAP (configs/yolo_trees.py); ~25 minutes a run on the 2-core CPU. Scratch gets a 3x higher rate (it has no weights
to keep) and its BatchNorm trains; the issue's goal is pretrained ahead by at least 15 AP50
points. Seeds outermost: a stopped sweep has both arms' first seeds.
"""

from configs.common import strategy_sweep
from configs.yolo_trees import get_config as trees_config

ROWS = {
    "pretrained": {"model.random_init": False, "optim.learning_rate": 1e-3},
    "scratch": {"model.random_init": True, "optim.learning_rate": 3e-3},
}


def get_config(arg=None):
    config = trees_config()
    config.strategy = "pretrained"  # the row label; the swept fields decide the run
    config.sweep = strategy_sweep(ROWS, seeds_first=True)
    return config
