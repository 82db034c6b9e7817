"""all-MiniLM-L6-v2 -> Rotten Tomatoes with progressive unfreezing: the default experiment.

    python -m tlx.train --config=configs/minilm_rt_progressive.py --workdir=runs/minilm_rt_progressive

The head trains alone first; every `plan.every` steps one more group unfreezes from the top.
Result: see the README (measured on a 2-core CPU).
"""

from configs.minilm_rt_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "progressive"
    return config
