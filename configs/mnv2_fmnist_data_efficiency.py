"""Data efficiency, MobileNetV2 -> Fashion-MNIST: ImageNet weights against the same network from
random init, both fine-tuned with the same 600 steps, at 100, 300, 1,000, 3,000 and all 54,000
labels, 3 seeds each (30 runs). The three transfer-learning claims read off one table: final
accuracy (improved performance), accuracy against labels (lower data needs) and time to an
accuracy (`--time_to`, reduced training time).

    python -m experiments.sweep --config=configs/mnv2_fmnist_data_efficiency.py --workdir=runs/data_mnv2
    python -m experiments.aggregate --workdir=runs/data_mnv2 \
        --group_by=strategy,data.train_examples --over=seed --time_to=0.7,0.8 \
        --x_axis=data.train_examples --out=experiments/results/data_efficiency_mnv2_fmnist
"""

from configs.mnv2_fmnist_base import base_config

LABELS = (100, 300, 1000, 3000, 0)  # 0: the whole training split


def get_config(arg=None):
    config = base_config()
    config.strategy = "transfer"  # a label for the aggregation
    config.plan.name = "finetune"
    # Seeds outermost: every (strategy, labels) pair gets seed 0 before any gets seed 1, so a
    # sweep stopped early still draws the whole curve.
    config.sweep = (
        "seed=[0,1,2];"
        "(strategy,model.random_init,model.batchnorm,optim.learning_rate,plan.lr_multipliers)="
        "[('transfer',false,'frozen',0.0003,'head=10'),('scratch',true,'train',0.001,'')];"
        f"data.train_examples=[{','.join(map(str, LABELS))}]"
    )
    return config
