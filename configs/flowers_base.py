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

from configs.common import optim_section, peft_section, plan_section, selection_section


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
    # Frozen bottom groups' outputs computed once per example: "off" | "memory" | "disk"
    # (tlx.transfer.feature_cache; images need data.augment = "none").
    config.feature_cache = "off"
    # Train steps per compiled call (a lax.scan, cut at every log / eval / save / stage step): for
    # cached steps of a millisecond or two, where the host's per-step work would dominate.
    config.steps_per_call = 1
    # Micro-batches per step, their gradients summed: the same update in less activation memory.
    config.grad_accum_steps = 1
    config.parallel = "jit"  # jit (NamedSharding over all devices) | pmap
    # jit only: split parameters and optimizer state over a 'model' mesh axis of this many devices
    # (the batch over the rest); rules 'regex=spec; ...' (spec e.g. 'None,model' or 'replicated'),
    # else arrays of >= 2**16 elements split along their largest divisible dimension.
    config.sharding = ml_collections.ConfigDict({"model_axis": 1, "rules": ""})
    # XLA flags for this model, set by tlx.train before JAX starts (your XLA_FLAGS win).
    config.xla_flags = ""

    config.model = ml_collections.ConfigDict()
    config.model.name = "image_classifier"
    # Activations and matmuls; parameters, optimizer state and loss stay float32.
    config.model.compute_dtype = "float32"  # float32 | bfloat16 (mixed precision) | float16
    config.model.checkpoint = ""
    config.model.random_init = False  # True: the checkpoint's architecture, random weights
    config.model.checkpoint_path = ""
    config.model.arch = ""
    config.model.kwargs = ml_collections.ConfigDict()
    config.model.image_size = 0  # 0: the checkpoint's own crop size
    config.model.resize_size = 0  # before the centre crop; 0: the recipe's ratio (256/224)
    config.model.batchnorm = "frozen"
    # BN in groups a stage freezes: "frozen" | "affine" (scale, bias train) | "train" (statistics)
    config.model.frozen_batchnorm = "frozen"
    config.model.frozen_batchnorm_lr_multiplier = 1.0  # "affine": rate of frozen groups' BN

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

    config.plan = plan_section(name="freeze_to", k=3, every=92)
    config.optim = optim_section(weight_decay=1e-4)
    config.selection = selection_section()
    config.peft = peft_section()
    return config
