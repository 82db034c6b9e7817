"""Strategy ablation, all-MiniLM-L6-v2 -> Rotten Tomatoes: feature extraction, freeze_to(2) and
freeze_to(4), finetune, progressive, discriminative rates, ULMFiT and from scratch (the same
architecture with random weights), 3 seeds each (24 runs of 360 steps at batch 32, 6-14 minutes
each on the 2-core CPU).

    python -m experiments.sweep --config=configs/minilm_rt_ablation.py --workdir=runs/ablation_rt
    python -m experiments.aggregate --workdir=runs/ablation_rt --group_by=strategy --over=seed \
        --out=experiments/results/ablation_minilm_rt
"""

from configs.common import strategy_rows, strategy_sweep
from configs.minilm_rt_base import base_config


def get_config(arg=None):
    config = base_config()
    config.strategy = "finetune"  # a label for the aggregation; the swept fields decide the run
    config.plan.name = "finetune"
    config.plan.every = 36
    config.optim.cut_frac = 0.1  # slanted triangular (ulmfit)
    config.optim.ratio = 32.0
    config.sweep = strategy_sweep(
        strategy_rows(
            k_values=(2, 4),
            learning_rate=config.optim.learning_rate,
            warmup_steps=config.optim.warmup_steps,
            scratch={"model.random_init": True, "optim.learning_rate": 1e-4},
        ),
        seeds_first=True,  # at 6-14 min a cell, partial results compare every strategy
    )
    return config
