"""The small CNN from scratch (configs/fmnist_small_cnn.py) trained to convergence at every label
count of the Fashion-MNIST data-efficiency studies, 3 seeds (15 runs): the strongest neural
from-scratch row of the converged study (issue 20), beside the MobileNetV2 arms
(configs/mnv2_fmnist_converged.py) and pixel logistic regression (configs/mnv2_fmnist_classical.py).

    python -m experiments.sweep --config=configs/fmnist_small_cnn_converged.py --workdir=runs/converged_small_cnn

Budget: until 5 evaluations (1,000 steps of 64) pass without a better validation accuracy, at most
6,000 steps (7.1 epochs of all 54,000 labels); every split reported at the best evaluation. The
network is cheap (about 7 steps a second on the 2-core CPU), so it gets the longest budget of the
study's arms. Each cell its seed's class-stratified subset, as every Fashion-MNIST arm.
"""

from configs.fmnist_small_cnn import get_config as small_cnn_config
from configs.mnv2_fmnist_data_efficiency import LABELS


def get_config(arg=None):
    config = small_cnn_config()
    config.strategy = "small_cnn"  # the study's row label, beside transfer / scratch
    config.total_steps = 6000  # the cap; early stopping ends most cells before it
    config.eval_every = 200
    config.checkpoint_every = 200
    config.keep_checkpoints = 1
    config.selection.patience = 5
    # Seeds outermost: a sweep stopped early has whole curves for the first seeds.
    config.sweep = f"seed=[0,1,2];data.train_examples=[{','.join(map(str, LABELS))}]"
    return config
