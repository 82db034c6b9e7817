"""all-MiniLM-L6-v2 -> Rotten Tomatoes, partial fine-tuning: the top `plan.k` groups train.

    python -m tlx.train --config=configs/minilm_rt_freeze_to.py --workdir=runs/minilm_rt_freeze_to

With k=3 the head and the top two transformer layers train; embeddings and layers 0-3 stay frozen.
Result (2-core AMD EPYC CPU, 2026-11-26, one `tlx.train` process; the `strategy=freeze_to` cell of
`python -m experiments.sweep --config=configs/minilm_rt_plans.py --workdir=runs/plans`): test
accuracy 0.8091, validation 0.7835, wall time 7.4 min including start-up and compilation
(training 412 s).
"""

from configs.minilm_rt_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "freeze_to"
    config.plan.k = 3
    return config
