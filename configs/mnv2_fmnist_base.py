"""Shared settings for MobileNetV2 (ImageNet, torchvision) -> Fashion-MNIST with 1,000 labels.

Not an experiment by itself: use one of mnv2_fmnist_{feature_extraction,freeze_to,finetune,
progressive,scratch}.py. The 1,000 training images are a class-stratified subset of the 54,000
training split fixed by the seed (`data.train_examples`); validation (6,000) and test (10,000)
are complete. Images are 28x28 grayscale, made RGB and upsampled to `model.image_size`.
"""

import ml_collections

from configs.common import optim_section, peft_section, plan_section, selection_section


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 32
    config.total_steps = 600  # ~19 epochs of the 1,000 labelled images
    config.eval_every = 200
    config.checkpoint_every = 200
    config.log_every = 50
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
    config.model.checkpoint = "torchvision:mobilenet_v2"  # packaged real ImageNet weights
    config.model.random_init = False  # True: the checkpoint's architecture, random weights
    config.model.checkpoint_path = ""  # a local copy of the catalog file, if elsewhere
    config.model.arch = ""  # from the checkpoint; set for from-scratch models
    config.model.kwargs = ml_collections.ConfigDict({"dropout": 0.2})
    config.model.image_size = 64  # crop fed to the network (resize keeps torchvision's 256/224)
    config.model.resize_size = 0  # before the centre crop; 0: the recipe's ratio (256/224)
    config.model.batchnorm = "frozen"  # running statistics fixed while fine-tuning
    # BN in groups a stage freezes: "frozen" | "affine" (scale, bias train) | "train" (statistics)
    config.model.frozen_batchnorm = "frozen"
    config.model.frozen_batchnorm_lr_multiplier = 1.0  # "affine": rate of frozen groups' BN

    config.data = ml_collections.ConfigDict()
    config.data.name = "fashion_mnist"
    config.data.data_dir = ""  # '' -> $TLX_DATA_DIR or ~/tensorflow_datasets
    config.data.train_examples = 1000  # 0 = all 54,000
    config.data.augment = "random_resized_crop"
    config.data.crop_scale = (0.5, 1.0)
    config.data.workers = 0  # grain worker processes for the training pipeline
    config.data.eval_batch_size = 250
    config.data.eval_examples = 0  # 0 = whole splits; N = the first N (quick dev runs)
    config.data.eval_split = "validation"
    config.data.eval_splits = ("validation", "test")

    config.plan = plan_section(k=4, every=60)
    config.optim = optim_section(learning_rate=3e-4, warmup_steps=30, weight_decay=1e-4)
    config.selection = selection_section()
    config.peft = peft_section()
    return config
