"""Data efficiency on Fashion-MNIST with every arm trained to convergence and selected on
validation (issue 20): ImageNet MobileNetV2 fine-tuned, the same network from random init, and the
small CNN from scratch (configs/fmnist_small_cnn.py), at 100, 300, 1,000, 3,000 and all 54,000
labels, 3 seeds (45 runs). The classical row is configs/mnv2_fmnist_classical.py (pixel logistic
regression, the same labels and seeds).

    python -m experiments.sweep --config=configs/mnv2_fmnist_converged.py --workdir=runs/converged_mnv2
    python -m experiments.aggregate --workdir=runs/converged_mnv2 \
        --group_by=strategy,data.train_examples --over=seed --time_to=0.8,0.85 \
        --x_axis=data.train_examples --paired_against=strategy=transfer \
        --out=experiments/results/converged_mnv2_fmnist

Budgets: each arm trains until 5 evaluations (1,000 steps) pass without a better validation
accuracy, at most 6,000 steps, and reports every split at its best evaluation; the table gives
each cell's selected step, the seconds and the FLOPs to it. Every arm sees the whole 28x28 image
(resized, not cropped: model.resize_size), MobileNetV2 at 64 px as in the earlier studies, the
small CNN at 28 px. Cost on this project's 2-core CPU: MobileNetV2 about 0.5 s a step, so a cell
that runs its whole budget takes ~50 minutes; run the sweep alone, across sessions (it resumes).
"""

from configs.common import strategy_sweep
from configs.mnv2_fmnist_base import base_config
from configs.mnv2_fmnist_data_efficiency import LABELS

MOBILENET = {
    "model.checkpoint": "torchvision:mobilenet_v2",
    "model.arch": "",
    "model.image_size": 64,
    "model.resize_size": 64,  # the whole image, upsampled; nothing cropped away
    "model.kwargs.dropout": 0.2,
    "batch_size": 32,
    "optim.warmup_steps": 30,
}
ROWS = {
    "transfer": {
        **MOBILENET,
        "model.random_init": False,
        "model.batchnorm": "frozen",
        "optim.learning_rate": 3e-4,
        "plan.lr_multipliers": "head=10",
    },
    "scratch": {
        **MOBILENET,
        "model.random_init": True,
        "model.batchnorm": "train",
        "optim.learning_rate": 1e-3,
        "plan.lr_multipliers": "",
    },
    "small_cnn": {
        "model.checkpoint": "",
        "model.arch": "small_cnn",
        "model.image_size": 28,
        "model.resize_size": 28,
        "model.kwargs.dropout": 0.5,
        "batch_size": 64,
        "optim.warmup_steps": 100,
        "model.random_init": False,  # no checkpoint: random init all the same
        "model.batchnorm": "train",
        "optim.learning_rate": 1e-3,
        "plan.lr_multipliers": "",
    },
}


def get_config(arg=None):
    config = base_config()
    config.strategy = "transfer"  # a label for the aggregation; the swept fields decide the run
    config.plan.name = "finetune"
    config.total_steps = 6000  # the cap; early stopping ends most cells well before it
    config.eval_every = 200
    config.checkpoint_every = 200
    config.keep_checkpoints = 1
    config.selection.metric = "accuracy"
    config.selection.patience = 5
    # Seeds outermost, then labels: every (arm, labels) pair gets seed 0 before any gets seed 1.
    arms = strategy_sweep(ROWS, seeds=(0,), seeds_first=True).split(";", 1)[1]
    config.sweep = f"seed=[0,1,2];data.train_examples=[{','.join(map(str, LABELS))}];{arms}"
    return config
