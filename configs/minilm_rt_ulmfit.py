"""all-MiniLM-L6-v2 -> Rotten Tomatoes the ULMFiT way (Howard & Ruder, 2018): gradual unfreezing
from the top (one more group every `plan.every` steps), discriminative learning rates (each group
2.6x slower than the one above it: layer_decay = 1/2.6) and a slanted triangular schedule (linear
rise over the first 10% of steps, then linear decay to 1/32 of the peak).

    python -m tlx.train --config=configs/minilm_rt_ulmfit.py --workdir=runs/minilm_rt_ulmfit

Result (2-core AMD EPYC CPU, 2026-11-26, one `tlx.train` process; the `strategy=ulmfit` cell of
`python -m experiments.sweep --config=configs/minilm_rt_plans.py --workdir=runs/plans`): test
accuracy 0.8026, validation 0.7812, wall time 13.7 min; below plain progressive (0.8220 / 0.8026)
at this budget, one seed, learning rate untuned.
"""

from configs.minilm_rt_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "progressive"
    config.plan.every = 36
    config.plan.layer_decay = 1 / 2.6
    config.optim.learning_rate = 4e-4  # peak; layer_5 x 1/2.6, ..., layer_0 x 1/2.6**6, head x 10
    config.optim.decay = "slanted_triangular"
    config.optim.cut_frac = 0.1
    config.optim.ratio = 32.0
    config.optim.warmup_steps = 0  # the slanted triangle's rise is the warmup
    return config
