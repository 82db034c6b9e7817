"""all-MiniLM-L6-v2 -> Rotten Tomatoes, feature extraction: the encoder is frozen, the head trains.

    python -m tlx.train --config=configs/minilm_rt_feature_extraction.py --workdir=runs/minilm_rt_fe

The frozen encoder costs forward work only (no backward, no optimizer state), so the head gets a
higher learning rate.
Result (2-core AMD EPYC CPU, 2026-11-26, one `tlx.train` process; the `strategy=feature_extraction`
cell of `python -m experiments.sweep --config=configs/minilm_rt_plans.py --workdir=runs/plans`):
test accuracy 0.7581, validation 0.7422, wall time 5.8 min including start-up and compilation
(training 303 s).
"""

from configs.minilm_rt_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "feature_extraction"
    config.optim.learning_rate = 3e-3
    config.optim.weight_decay = 0.0
    config.plan.lr_multipliers = ""  # the head is all that trains: the base rate is its rate
    return config
