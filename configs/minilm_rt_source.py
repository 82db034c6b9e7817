"""The source models of the Rotten Tomatoes -> airline tweets adaptation
(configs/adapt_rt_airline.py): all-MiniLM-L6-v2 fine-tuned on Rotten Tomatoes as in
configs/minilm_rt_finetune.py (360 steps of 32, the strategy ablation's `finetune` arm, 0.842 +-
0.005 test over 3 seeds), one run per seed, each scored on Rotten Tomatoes only.

    python -m experiments.sweep --config=configs/minilm_rt_source.py --workdir=runs/text_source
    python -m experiments.aggregate --workdir=runs/text_source --group_by=data.name --over=seed \
        --metric=test_accuracy --out=experiments/results/adaptation_rt_source

About 4 minutes a run alone on a 2-core AMD EPYC Zen 5; 17-19 minutes two at a time on a 2-core
Zen 3. Published: experiments/results/adaptation_rt_source.md (test 0.842 +- 0.005).
"""

from configs.minilm_rt_finetune import get_config as finetune_config

SEEDS = (0, 1, 2)


def get_config(arg=None):
    config = finetune_config()
    config.strategy = "source"
    config.keep_checkpoints = 1
    config.sweep = f"seed=[{','.join(map(str, SEEDS))}]"
    return config
