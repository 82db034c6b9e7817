"""COCO YOLOv3-tiny (darknet's weights) -> FashionDet: detect the 10 Fashion-MNIST classes on
real-photo scenes (tlx.data.fashiondet), fine-tuned with the heads at 10x.

    python -m tlx.train --config=configs/yolo_fashiondet.py --workdir=runs/yolo_fashiondet
    python -m tlx.train --config=configs/yolo_fashiondet.py --workdir=runs/yolo_fashiondet_fe \\
        --config.plan.name=feature_extraction

The heads are resized for 10 classes; each anchor keeps its COCO box and objectness outputs
(tlx.weights.darknet.adapt_heads). 160 px scenes at model.image_size=160 (5x5 and 10x10 cells).
Evaluation reports COCO's mAP@[.5:.95], AP50 and AP75 (pycocotools) on 500 validation scenes,
and the run keeps the checkpoint of best validation mAP.
"""

import ml_collections

from configs.common import optim_section, plan_section, run_defaults, selection_section


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.task = "detection"
    config.seed = 0
    config.batch_size = 16
    # A pilot (seed 0, 300 steps, 100 validation scenes) reached validation mAP 0.09, 0.32, 0.52
    # at steps 100, 200, 300 (test 0.42; from random init 0.21), ~1 s a step under load.
    config.total_steps = 1000
    config.eval_every = 200
    config.checkpoint_every = 200
    config.log_every = 50
    config.keep_checkpoints = 2
    run_defaults(config)

    config.model = ml_collections.ConfigDict()
    config.model.name = "darknet_detector"
    config.model.compute_dtype = "float32"
    config.model.checkpoint = "darknet:yolov3-tiny"  # packaged COCO weights
    config.model.random_init = False  # True: the same network from random init (scratch)
    config.model.checkpoint_path = ""
    config.model.arch = ""  # a cfg (bundled name or .cfg path) when training from scratch
    config.model.image_size = 160  # a multiple of 32
    config.model.letterbox = False
    config.model.batchnorm = "train"  # detectors fine-tune their BatchNorm statistics (darknet)
    config.model.frozen_batchnorm = "frozen"

    config.data = ml_collections.ConfigDict()
    config.data.name = "fashiondet"
    config.data.data_dir = ""
    config.data.train_examples = 0  # 0: all 20,000 scenes
    config.data.augment = "flip_color"
    config.data.max_boxes = 8
    config.data.workers = 0
    config.data.eval_batch_size = 50
    config.data.eval_examples = 0
    config.data.eval_split = "validation"
    config.data.eval_splits = ("validation", "test")

    # feature_extraction trains the last `head` groups: both detection heads.
    config.plan = plan_section(name="finetune", head=2, lr_multipliers="head_0=10,head_1=10")
    config.optim = optim_section(learning_rate=1e-3, warmup_steps=100, weight_decay=5e-4)
    config.selection = selection_section(metric="mAP")
    return config
