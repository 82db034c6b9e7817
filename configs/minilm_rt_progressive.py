"""all-MiniLM-L6-v2 -> Rotten Tomatoes with progressive unfreezing: the default experiment.

    python -m tlx.train --config=configs/minilm_rt_progressive.py --workdir=runs/minilm_rt_progressive

The head trains alone first (at 10x the base rate); every 36 steps one more group unfreezes from the
top (head, layer_5, ..., layer_0, embeddings), so the last 108 of 360 steps train everything.

Result (2-core AMD EPYC CPU, 2026-11-26, one `tlx.train` process; the `strategy=progressive` cell
of `python -m experiments.sweep --config=configs/minilm_rt_plans.py --workdir=runs/plans`): test
accuracy 0.8220, validation 0.8026, wall time 12.5 min including start-up and compilation
(training 705 s).
"""

from configs.minilm_rt_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "progressive"
    return config
