"""Data efficiency of the classical baseline, TF-IDF + logistic regression -> Rotten Tomatoes
(configs/minilm_rt_tfidf.py), at the label counts and seeds of
configs/minilm_rt_data_efficiency.py: 100, 300, 1,000, 3,000 and all 10,209 labels, 3 seeds each
(15 runs), each cell the same labelled subset as the neural cell with its seed and label count;
under a minute a cell on the 2-core CPU.

    python -m experiments.sweep --config=configs/minilm_rt_classical.py --workdir=runs/classical_rt
    python -m experiments.aggregate --workdir=runs/classical_rt \
        --group_by=strategy,data.train_examples --over=seed --x_axis=data.train_examples \
        --out=experiments/results/classical_minilm_rt

A sweep of its own rather than a row of the neural sweeps: a baseline row would add model.name
(and model.kwargs) to every row of their zipped strategy group, which changes the overrides of
their published cells. The seeds are swept to match the neural arms' n, but they give the same
numbers here: the text pipeline draws one subset for every seed (tlx.data.text.Subset with
subset seed 0) and lbfgs is deterministic.
"""

from configs.minilm_rt_data_efficiency import LABELS
from configs.minilm_rt_tfidf import get_config as tfidf_config


def get_config(arg=None):
    config = tfidf_config()
    config.strategy = "tfidf_logreg"  # a label for the aggregation, beside transfer / scratch
    # Seeds outermost, as in the neural sweep: a sweep stopped early has the whole curve.
    config.sweep = f"seed=[0,1,2];data.train_examples=[{','.join(map(str, LABELS))}]"
    return config
