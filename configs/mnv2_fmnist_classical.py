"""Data efficiency of the classical baseline, logistic regression on pixels -> Fashion-MNIST
(configs/mnv2_fmnist_pixel_logreg.py), at the label counts and seeds of
configs/mnv2_fmnist_data_efficiency.py: 100, 300, 1,000, 3,000 and all 54,000 labels, 3 seeds
each (15 runs), each cell the same class-stratified subset as the neural cell with its seed and
label count. On the 2-core CPU a 1,000-label cell takes about a minute, an all-label cell about
20 minutes (configs/mnv2_fmnist_pixel_logreg.py).

    python -m experiments.sweep --config=configs/mnv2_fmnist_classical.py --workdir=runs/classical_mnv2
    python -m experiments.aggregate --workdir=runs/classical_mnv2 \
        --group_by=strategy,data.train_examples --over=seed --x_axis=data.train_examples \
        --out=experiments/results/classical_mnv2_fmnist

A sweep of its own rather than a row of the neural sweeps: a baseline row would add model.name
(and model.kwargs) to every row of their zipped strategy group, which changes the overrides of
their published cells.
"""

from configs.mnv2_fmnist_data_efficiency import LABELS
from configs.mnv2_fmnist_pixel_logreg import get_config as pixel_config


def get_config(arg=None):
    config = pixel_config()
    config.strategy = "pixel_logreg"  # a label for the aggregation, beside transfer / scratch
    # Seeds outermost, as in the neural sweep: a sweep stopped early has the whole curve.
    config.sweep = f"seed=[0,1,2];data.train_examples=[{','.join(map(str, LABELS))}]"
    return config
