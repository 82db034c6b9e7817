"""Shared settings for ImageNet CNNs -> tf_flowers (3,670 photos, 5 classes; train 2,936 /
validation 367 / test 367 carved by content hash). For a machine that can download.

Not an experiment by itself: use vgg16_flowers_freeze_to.py or inception_v3_flowers_freeze_to.py.
Needs, once: the checkpoint (tlx downloads it into $TLX_CACHE/weights, sha256-checked) and the
data, either tfds's tf_flowers prepared in data.data_dir (`tfds build tf_flowers`, which needs
TensorFlow), or, with no TensorFlow, the extracted flower_photos.tgz
(https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz) read as
an image folder: --config.data.name=image_folder:/path/to/flower_photos.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.needs_download = True  # weights and data are not installable offline
    config.seed = 0
    config.batch_size = 32
    config.total_steps = 460  # 5 epochs of 2,936 photos
    config.eval_every = 92
    config.checkpoint_every = 92
    config.log_every = 23
    config.keep_checkpoints = 2
    config.init_from = ""

    config.model = ml_collections.ConfigDict()
    config.model.name = "image_classifier"
    config.model.checkpoint = ""
    config.model.checkpoint_path = ""
    config.model.arch = ""
    config.model.kwargs = ml_collections.ConfigDict()
    config.model.image_size = 0  # 0: the checkpoint's own crop size
    config.model.batchnorm = "frozen"
    config.model.frozen_batchnorm = "frozen"  # BN in groups a stage freezes: "frozen" | "train"

    config.data = ml_collections.ConfigDict()
    config.data.name = "tf_flowers"
    config.data.data_dir = ""
    config.data.train_examples = 0
    config.data.augment = "random_resized_crop"
    config.data.crop_scale = (0.35, 1.0)
    config.data.workers = 2
    config.data.eval_batch_size = 64
    config.data.eval_examples = 0
    config.data.eval_split = "validation"
    config.data.eval_splits = ("validation", "test")

    config.plan = ml_collections.ConfigDict()
    config.plan.name = "freeze_to"
    config.plan.k = 3
    config.plan.every = 92
    config.plan.start = 1
    config.plan.head = 1
    config.plan.lr_multipliers = "head=10"
    config.plan.layer_decay = 1.0
    config.plan.lr_slice = ()  # (low, high): fastai-style factors from the input group to the head

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 1e-4
    config.optim.warmup_steps = 20
    config.optim.decay = "cosine"
    config.optim.final_fraction = 0.0
    config.optim.weight_decay = 1e-4
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8
    config.optim.clip_norm = 1.0
    return config
