"""COCO YOLOv3-tiny (darknet's weights) -> tree crowns in aerial images (deepforest's NEON images):
trained on one site (YELL: the top 80% of its two crops), selected on the rest of them, tested on
two other sites (OSBS, SOAP). The same network from random init is the baseline:

    python -m tlx.train --config=configs/yolo_trees.py --workdir=runs/yolo_trees
    python -m tlx.train --config=configs/yolo_trees.py --workdir=runs/yolo_trees_scratch \\
        --config.model.random_init=True --config.optim.learning_rate=3e-3

One class ("tree"); 400 px tiles letterboxed to 416 (13x13 and 26x26 cells). Evaluation reports
COCO's mAP@[.5:.95], AP50 and AP75, crowns cut by a tile's edge (less than half inside) ignored.
"""

from configs.yolo_fashiondet import get_config as fashiondet_config


def get_config(arg=None):
    config = fashiondet_config()
    config.batch_size = 8
    # 600 steps of 8 (~70 epochs of the 68 training tiles): a pilot (seed 0, 150 steps) was still
    # gaining on validation (AP50 0.10, 0.38, 0.46 at steps 50, 100, 150); ~2 s a step here.
    config.total_steps = 600
    config.eval_every = 100
    config.checkpoint_every = 100
    config.model.image_size = 416
    config.model.letterbox = True  # validation tiles at a crop's bottom edge are not square
    config.data.name = "deepforest"
    config.data.max_boxes = 64  # the densest tile holds 56 crowns
    config.data.augment = "flip_color_crop"  # 64 training tiles: scale and position jitter
    config.data.eval_batch_size = 8
    config.optim.warmup_steps = 100
    return config
