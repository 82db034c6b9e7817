"""Strategy ablation, MobileNetV2 (ImageNet) -> Fashion-MNIST at 1,000 labels: feature extraction,
freeze_to(2) and freeze_to(5), finetune, progressive, discriminative rates, ULMFiT and from
scratch, 3 seeds each (24 runs of 600 steps, about 5 minutes each on the 2-core CPU).

    python -m experiments.sweep --config=configs/mnv2_fmnist_ablation.py --workdir=runs/ablation_mnv2
    python -m experiments.aggregate --workdir=runs/ablation_mnv2 --group_by=strategy --over=seed \
        --out=experiments/results/ablation_mnv2_fmnist
"""

from configs.common import strategy_rows, strategy_sweep
from configs.mnv2_fmnist_base import base_config


def get_config(arg=None):
    config = base_config()
    config.strategy = "finetune"  # a label for the aggregation; the swept fields decide the run
    config.plan.name = "finetune"
    config.optim.cut_frac = 0.1  # slanted triangular (ulmfit): rise over the first 10% ...
    config.optim.ratio = 32.0  # ... then decay to 1/32 of the peak
    config.sweep = strategy_sweep(
        strategy_rows(
            k_values=(2, 5),
            learning_rate=config.optim.learning_rate,
            warmup_steps=config.optim.warmup_steps,
            # as configs/mnv2_fmnist_scratch.py: statistics learned, a higher rate
            scratch={
                "model.random_init": True,
                "model.batchnorm": "train",
                "optim.learning_rate": 1e-3,
            },
        )
    )
    return config
