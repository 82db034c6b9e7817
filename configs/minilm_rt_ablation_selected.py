"""The all-MiniLM-L6-v2 -> Rotten Tomatoes strategy ablation (configs/minilm_rt_ablation.py: 8
strategies x 3 seeds on all 10,209 labels, 360 steps) rerun as a reviewer asks (issue 20): every
cell evaluated every 60 steps and reported at its best validation accuracy (config.selection).

    python -m experiments.sweep --config=configs/minilm_rt_ablation_selected.py --workdir=runs/ablation_rt_selected
    python -m experiments.aggregate --workdir=runs/ablation_rt_selected --group_by=strategy --over=seed \
        --time_to=0.75,0.8 --paired_against=strategy=finetune \
        --out=experiments/results/ablation_minilm_rt_selected

No early stop (patience 0): the plans' schedules are laid over the 360 steps, and cutting them
short would judge a plan by its first stages. The strategies compare at one budget; the
from-scratch row here is step-limited, and the from-scratch encoder trained until validation
stops improving is the converged study's (configs/minilm_rt_converged.py), beside TF-IDF
(configs/minilm_rt_classical.py). About 8 minutes a cell, 3.2 hours in all on the 2-core CPU.
"""

from configs.common import select_best_of
from configs.minilm_rt_ablation import get_config as ablation_config


def get_config(arg=None):
    config = ablation_config()
    return select_best_of(config, every=60)  # 6 evaluations to choose from, no early stop
