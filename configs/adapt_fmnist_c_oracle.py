"""The target oracle of the corruption adaptation benchmark (configs/adapt_fmnist_c.py): the same
clean source model fine-tuned on the target's labels (its 4,000 labelled training images, the
images the adaptation methods see unlabelled), selected on the target's validation split, and
scored on the same 5,000 target test images ("target_test"), 3 seeds. The upper end of the gap
an adaptation method closes.

    python -m experiments.sweep --config=configs/adapt_fmnist_c_oracle.py --workdir=runs/adapt_fmnist_c_oracle
    python -m experiments.aggregate --workdir=runs/adapt_fmnist_c_oracle \\
        --group_by=adapt.target,strategy --over=seed --metric=target_test_accuracy \\
        --out=experiments/results/adaptation_fmnist_c_oracle
    (configs/adapt_fmnist_c.py joins these rows with --rows_from)

Budget: until 4 evaluations (400 steps of 64) pass without a better validation accuracy, at most
1,500 steps (24 epochs of the 4,000 images); AdamW 3e-4, cosine, every layer training (BatchNorm
statistics too: the target's own).
"""

from configs.adapt_fmnist_c import DEFAULT_TARGET, SEEDS, SOURCE_RUNS, TARGETS, adapt_section
from configs.fmnist_small_cnn_bn import get_config as source_config


def get_config(arg=None):
    config = source_config()
    config.strategy = "oracle"
    config.init_from = SOURCE_RUNS + "/seed={seed}"
    config.data.name = DEFAULT_TARGET
    config.data.train_examples = 0
    config.adapt = adapt_section("none", DEFAULT_TARGET)
    config.total_steps = 1500
    config.eval_every = 100
    config.checkpoint_every = 100
    config.selection.patience = 4
    config.optim.learning_rate = 3e-4
    config.optim.warmup_steps = 50
    pairs = ",".join(f"('{t}','{t}')" for t in TARGETS)
    seeds = ",".join(map(str, SEEDS))
    config.sweep = f"seed=[{seeds}];(adapt.target,data.name)=[{pairs}];strategy=['oracle']"
    return config
