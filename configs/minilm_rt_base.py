"""Shared settings for all-MiniLM-L6-v2 -> Rotten Tomatoes; each plan's config starts from here.

Not an experiment by itself: use one of minilm_rt_{feature_extraction,freeze_to,finetune,progressive}.py.
"""

import ml_collections


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

    config.model = ml_collections.ConfigDict()
    config.model.name = "bert_classifier"
    config.model.checkpoint = "hf:sentence-transformers/all-MiniLM-L6-v2"
    config.model.pooling = "mean"  # how this encoder was trained to embed sentences
    config.model.classifier_dropout = 0.1

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

    config.plan = ml_collections.ConfigDict()
    config.plan.name = "finetune"
    config.plan.k = 2  # freeze_to: top k groups train
    config.plan.every = 36  # progressive: steps between unfreezes
    config.plan.start = 1  # progressive: groups trainable at step 0
    config.plan.head = 1  # feature_extraction: groups in the head
    config.plan.lr_multipliers = "head=10"  # the fresh head learns faster; regex=factor, ...
    config.plan.layer_decay = 1.0  # lr x decay**depth from the head
    config.plan.lr_slice = ()  # (low, high): fastai-style factors from the input group to the head

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 1e-4
    config.optim.warmup_steps = 20
    config.optim.decay = "cosine"
    config.optim.final_fraction = 0.0
    config.optim.weight_decay = 0.01
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8
    config.optim.clip_norm = 1.0
    return config
