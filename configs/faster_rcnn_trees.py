"""Faster R-CNN with FPN on the ImageNet MobileNetV2 -> tree crowns in aerial images (deepforest's
NEON images), beside COCO YOLOv3-tiny on the same data (configs/yolo_trees.py): trained on one
site, selected on the rest of its crops, tested on two other sites.

    python -m tlx.train --config=configs/faster_rcnn_trees.py --workdir=runs/frcnn_trees
    python -m tlx.train --config=configs/faster_rcnn_trees.py --workdir=runs/frcnn_trees_scratch \\
        --config.model.random_init=True

One class ("tree"); 400 px tiles letterboxed to 416 as the YOLO run's, the recipe of
configs/faster_rcnn_fashiondet.py (SGD one-cycle to 0.01, frozen stem and first stages) over 600
steps of 4 tiles (~35 epochs of the 68 training tiles), with darknet's crop-and-colour jitter. The
pyramid's finest level is stride 16 (MobileNetV2's), so crowns under ~20 px are the hard case;
COCO's mAP@[.5:.95], AP50 and AP75 as for YOLO, crowns cut by a tile's edge ignored.
"""

from configs.faster_rcnn_fashiondet import get_config as fashiondet_config


def get_config(arg=None):
    config = fashiondet_config()
    config.batch_size = 4
    config.total_steps = 600
    config.eval_every = 100
    config.checkpoint_every = 100
    config.model.image_size = 416
    config.model.letterbox = True  # validation tiles at a crop's bottom edge are not square
    config.data.name = "deepforest"
    config.data.max_boxes = 64  # the densest tile holds 56 crowns
    config.data.augment = "flip_color_crop"
    config.data.eval_batch_size = 8
    config.data.eval_examples = 0  # every validation and test tile
    return config
