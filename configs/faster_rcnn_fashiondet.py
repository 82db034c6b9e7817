"""Faster R-CNN with FPN on the ImageNet MobileNetV2 (torchvision's weights) -> FashionDet: the
two-stage detector of issue 23 on the 10 Fashion-MNIST classes in real-photo scenes.

    python -m tlx.train --config=configs/faster_rcnn_fashiondet.py --workdir=runs/frcnn_fashiondet
    python -m tlx.train --config=configs/faster_rcnn_fashiondet.py --workdir=runs/frcnn_scratch \\
        --config.model.random_init=True

The recipe of the torchvision reference measured on this data (issue 23): 160 px scenes on a
320 px canvas (torchvision's min_size=320), the pyramid on MobileNetV2's stride-16 and stride-32
outputs plus a pooled level (5 anchor sizes x 3 ratios on each), FrozenBatchNorm, the backbone's
stem and first three stages frozen (torchvision's blocks 0-6; freeze_to with k = the 8 groups
from stage_4 up), 400 steps of 8 images, SGD with momentum on a one-cycle schedule peaking at
0.01, gradients clipped. Evaluation: COCO mAP@[.5:.95], AP50 and AP75 (pycocotools) on 200 scenes,
the checkpoint of best validation mAP kept.
"""

import ml_collections

from configs.common import optim_section, plan_section, run_defaults, selection_section


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.task = "detection"
    config.seed = 0
    config.batch_size = 8
    config.total_steps = 400
    config.eval_every = 100
    config.checkpoint_every = 100
    config.log_every = 20
    config.keep_checkpoints = 2
    run_defaults(config)

    config.model = ml_collections.ConfigDict()
    config.model.name = "faster_rcnn"
    config.model.compute_dtype = "float32"
    config.model.checkpoint = "torchvision:mobilenet_v2"  # packaged ImageNet weights
    config.model.random_init = False  # True: the same detector from random init (scratch)
    config.model.checkpoint_path = ""
    config.model.arch = ""  # the backbone architecture when training from scratch
    config.model.image_size = 320  # the square canvas, a multiple of 32
    config.model.letterbox = False
    config.model.batchnorm = "frozen"  # torchvision's FrozenBatchNorm2d
    config.model.frozen_batchnorm = "frozen"

    config.data = ml_collections.ConfigDict()
    config.data.name = "fashiondet"
    config.data.data_dir = ""
    config.data.train_examples = 0  # 0: all 20,000 scenes
    config.data.augment = "flip"
    config.data.max_boxes = 8
    config.data.workers = 0
    config.data.eval_batch_size = 20
    config.data.eval_examples = 200
    config.data.eval_split = "validation"
    config.data.eval_splits = ("validation", "test")

    # Groups: stem, stage_1..7, last_conv, fpn, rpn, head. freeze_to k=8 trains stage_4 and up
    # with the detector, as torchvision's trainable_backbone_layers leaves blocks 0-6 frozen.
    config.plan = plan_section(name="freeze_to", k=8, head=3, lr_multipliers="")
    # torchvision's detection recipe: SGD with momentum 0.9 and L2 1e-4; one cycle to 0.01.
    config.optim = optim_section(
        optimizer="sgd", learning_rate=0.01, warmup_steps=0, decay="one_cycle",
        weight_decay=1e-4, clip_norm=10.0,
    )  # fmt: skip
    config.selection = selection_section(metric="mAP")
    return config
