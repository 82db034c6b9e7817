"""The target oracle of the Rotten Tomatoes -> airline adaptation (configs/adapt_rt_airline.py):
the same Rotten Tomatoes source model fine-tuned on the labels of the 7,375 airline tweets that
the adaptation methods see unlabelled, selected on the target's 1,000 validation tweets (balanced
accuracy), and scored on the same 3,000 test tweets ("target_test"), 3 seeds: the upper end of
the gap an adaptation closes.

    python -m experiments.sweep --config=configs/adapt_rt_airline_oracle.py \\
        --workdir=runs/adapt_rt_airline_oracle
    python -m experiments.aggregate --workdir=runs/adapt_rt_airline_oracle --group_by=strategy \\
        --over=seed --metric=target_test_balanced_accuracy \\
        --out=experiments/results/adaptation_rt_airline_oracle

Budget: until 4 evaluations (400 steps of 32) pass without a better validation balanced
accuracy, at most 1,200 steps (5.2 epochs of the tweets), AdamW 2e-5 constant as the adaptation
rows.
"""

from configs.adapt_rt_airline import SEEDS, SOURCE_RUNS, TARGET, text_adapt_section
from configs.adapt_rt_airline import get_config as adapt_config


def get_config(arg=None):
    config = adapt_config()
    config.strategy = "oracle"
    config.init_from = SOURCE_RUNS + "/seed={seed}"
    config.data.name = TARGET
    config.data.train_examples = 0
    config.adapt = text_adapt_section("none")
    config.adapt.label_map = ""  # source and target are the same dataset here
    config.plan.name = "finetune"
    config.total_steps = 1200
    config.selection.metric = "balanced_accuracy"
    config.selection.patience = 4
    config.sweep = f"seed=[{','.join(map(str, SEEDS))}];strategy=['oracle']"
    return config
