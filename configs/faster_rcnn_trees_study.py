"""Faster R-CNN (ImageNet MobileNetV2 backbone, FPN) fine-tuned on the tree crowns, 3 seeds, beside
the YOLOv3-tiny trees study's rows: which detector should a researcher fine-tune on aerial images
of an unseen site? (issue 23's "Faster R-CNN against YOLOv3-tiny on the trees").

    python -m experiments.sweep --config=configs/faster_rcnn_trees_study.py --workdir=runs/frcnn_trees_study
    python -m experiments.aggregate --workdir=runs/frcnn_trees_study --group_by=strategy --over=seed \\
        --metric=test_mAP --rows_from=experiments/results/yolo_trees_records.jsonl.gz \\
        --out=experiments/results/frcnn_trees

The same tiles, splits and selection as configs/yolo_trees_study.py (trained on YELL, selected on
validation mAP over YELL's held-out crops, tested on OSBS and SOAP), the recipe of
configs/faster_rcnn_trees.py (600 steps of 4 tiles at 416 px). Only the fine-tune runs: whether
ImageNet weights help Faster R-CNN at all is the FashionDet study's question
(configs/faster_rcnn_fashiondet_study.py), and a scratch arm here would cost ~1.5 CPU hours.
The row is labelled strategy=faster_rcnn so that it sits beside YOLO's pretrained and scratch rows.
"""

from configs.faster_rcnn_trees import get_config as trees_config

SEEDS = (0, 1, 2)


def get_config(arg=None):
    config = trees_config()
    config.strategy = "faster_rcnn"  # the row label beside YOLO's `pretrained` and `scratch`
    config.sweep = f"seed=[{','.join(map(str, SEEDS))}]"
    return config
