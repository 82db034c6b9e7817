"""Shared settings for all-MiniLM-L6-v2 -> Rotten Tomatoes; each plan's config starts from here.

Not an experiment by itself: use one of minilm_rt_{feature_extraction,freeze_to,finetune,progressive}.py.
"""

import ml_collections

from configs.common import optim_section, peft_section, plan_section, selection_section


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 32
    config.total_steps = 360  # 1.13 epochs of the 10,209 training snippets at batch 32
    config.eval_every = 120
    config.checkpoint_every = 120
    config.log_every = 20
    config.keep_checkpoints = 2
    config.init_from = ""  # another run's workdir to start from (not a resume)
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
    config.model.name = "bert_classifier"
    # Activations and matmuls; parameters, optimizer state and loss stay float32.
    config.model.compute_dtype = "float32"  # float32 | bfloat16 (mixed precision) | float16
    config.model.checkpoint = "hf:sentence-transformers/all-MiniLM-L6-v2"
    config.model.random_init = False  # True: the checkpoint's architecture, random weights
    config.model.pooling = "mean"  # how this encoder was trained to embed sentences
    config.model.classifier_dropout = 0.1
    # The encoder's dropout rates (hidden and attention); unset keeps the checkpoint's (0.1).
    config.model.dropout = ml_collections.config_dict.placeholder(float)

    config.data = ml_collections.ConfigDict()
    config.data.name = "rotten_tomatoes"
    config.data.data_dir = ""  # '' -> $TLX_DATA_DIR or ~/tensorflow_datasets
    config.data.max_length = 64
    config.data.buckets = (
        48,
        64,
    )  # 28% of batches fit 48 tokens; each length compiles once a stage
    config.data.train_examples = 0  # 0 = all; N = a fixed seeded subset of N
    config.data.eval_batch_size = 128
    config.data.eval_split = "validation"
    config.data.eval_splits = ("validation", "test")

    config.plan = plan_section()
    config.optim = optim_section()
    config.selection = selection_section()
    config.peft = peft_section()
    return config
