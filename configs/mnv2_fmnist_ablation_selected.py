"""The MobileNetV2 -> Fashion-MNIST strategy ablation (configs/mnv2_fmnist_ablation.py: 8
strategies x 3 seeds at 1,000 labels, 600 steps) rerun as a reviewer asks (issue 20): every cell
evaluated every 100 steps and reported at its best validation accuracy (config.selection), on the
whole 28x28 image (model.resize_size = 64: upsampled, no border cropped away).

    python -m experiments.sweep --config=configs/mnv2_fmnist_ablation_selected.py --workdir=runs/ablation_mnv2_selected
    python -m experiments.aggregate --workdir=runs/ablation_mnv2_selected --group_by=strategy --over=seed \
        --time_to=0.8,0.85 --paired_against=strategy=finetune \
        --out=experiments/results/ablation_mnv2_fmnist_selected

No early stop (patience 0): the plans' schedules (progressive unfreezing, ULMFiT's slanted
triangle) are laid over the 600 steps, and cutting them short would judge a plan by its first
stages. The strategies compare at one budget; the from-scratch row here is step-limited, and the
from-scratch baselines trained until validation stops improving are the converged study's
(configs/mnv2_fmnist_converged.py, configs/fmnist_small_cnn_converged.py). About 5.5 minutes a
cell, 2.2 hours in all on the 2-core CPU.
"""

from configs.common import select_best_of
from configs.mnv2_fmnist_ablation import get_config as ablation_config


def get_config(arg=None):
    config = ablation_config()
    config.model.resize_size = 64  # the whole image (the ablation cropped 64 of 73)
    return select_best_of(config, every=100)  # 6 evaluations to choose from, no early stop
