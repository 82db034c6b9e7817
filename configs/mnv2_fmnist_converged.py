"""Data efficiency on Fashion-MNIST with every arm trained until validation stops improving and
selected on validation (issue 20): ImageNet MobileNetV2 fine-tuned against the same network from
random init, at 100, 1,000 and all 54,000 labels, 3 seeds (18 runs). Its other rows are their
own sweeps, joined to the table with --rows_from: the small CNN from scratch at all five label
counts (configs/fmnist_small_cnn_converged.py) and pixel logistic regression
(configs/mnv2_fmnist_classical.py), each on the same class-stratified subsets and seeds.

    python -m experiments.sweep --config=configs/mnv2_fmnist_converged.py --workdir=runs/converged_mnv2
    python -m experiments.aggregate --workdir=runs/converged_mnv2 \
        --rows_from=experiments/results/converged_small_cnn_fmnist_records.jsonl.gz,experiments/results/classical_mnv2_fmnist_records.jsonl.gz \
        --group_by=strategy,data.train_examples --over=seed --time_to=0.8,0.85 \
        --x_axis=data.train_examples --paired_against=strategy=transfer \
        --out=experiments/results/converged_mnv2_fmnist

Budgets, per arm (each arm a row of the zipped `strategy` group): MobileNetV2 trains until 5
evaluations (1,000 steps of 32) pass without a better validation accuracy, at most 3,000 steps
(1.8 epochs of all labels: ~25 minutes at ~0.5 s a step on this project's 2-core CPU); the small
CNN, ~70x cheaper a step, gets 6,000 steps of 64. A cell that hits its cap says so in the table
(stopped_early "no", selected_step near the cap): at all labels that arm was still improving, and
the table reads as "within this budget". Every arm sees the whole 28x28 image (resized, not
cropped: model.resize_size), MobileNetV2 at 64 px as in the earlier studies. The three label
counts are the curve's ends and middle; 300 and 3,000 are in the fixed-budget study
(experiments/results/data_efficiency_mnv2_fmnist.md) and the small CNN's and pixel rows. Run the
sweep alone on the machine, across sessions (it resumes; seeds outermost, so a stopped sweep has
every arm's first seeds).
"""

from configs.common import strategy_sweep
from configs.mnv2_fmnist_base import base_config

LABELS = (100, 1000, 0)  # 0: the whole training split
MOBILENET = {
    "model.checkpoint": "torchvision:mobilenet_v2",
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
}


def get_config(arg=None):
    config = base_config()
    config.strategy = "transfer"  # a label for the aggregation; the swept fields decide the run
    config.plan.name = "finetune"
    config.total_steps = 3000  # the cap; early stopping ends the small-label cells before it
    config.eval_every = 200
    config.checkpoint_every = 200
    config.keep_checkpoints = 1
    config.selection.metric = "accuracy"
    config.selection.patience = 5
    # Seeds outermost, then labels: every (arm, labels) pair gets seed 0 before any gets seed 1.
    arms = strategy_sweep(ROWS, seeds=(0,), seeds_first=True).split(";", 1)[1]
    config.sweep = f"seed=[0,1,2];data.train_examples=[{','.join(map(str, LABELS))}];{arms}"
    return config
