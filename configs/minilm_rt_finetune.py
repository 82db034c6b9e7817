"""all-MiniLM-L6-v2 -> Rotten Tomatoes, full fine-tuning: every group trains from step 0.

    python -m tlx.train --config=configs/minilm_rt_finetune.py --workdir=runs/minilm_rt_finetune

Result: see the README (measured on a 2-core CPU).
"""

from configs.minilm_rt_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "finetune"
    return config
